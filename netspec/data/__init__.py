"""Data for training: Datum records, LMDB databases, images, IDX files, HDF5 lists,
the transformer (scale, mean, crop, mirror) and the background prefetcher."""
