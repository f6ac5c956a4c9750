"""Layer types that Caffe forks define and netspec does not implement: the fork an unknown type
probably comes from, named in its error. Each entry was checked against the fork's own source
(its src/caffe/layers/*_layer.cpp registering that type)."""

ELSEWHERE = {
    "BoxAnnotatorOHEM": "daijifeng001/caffe-rfcn (R-FCN's online hard example mining)",
    "CenterLoss": "ydwen/caffe-face (center loss for face recognition)",
    "Correlation": "lmb-freiburg/flownet2 (FlowNet's correlation of two feature maps)",
    "CTCLoss": "the CTC forks for text recognition (xmfbit/warpctc-caffe, Ewenwan/crnn.caffe)",
    "DeformableConvolution": "unsky/Deformable-ConvNets-caffe (deformable convolution)",
    "FocalLoss": "the focal-loss forks of SSD (e.g. canteen-man/MobileNet-SSD-Focal-loss)",
    "ImageLabelmapData": "s9xie/hed (HED's image and edge-map pairs; RCF and DeepSkeleton reuse it)",
    "ImageSegData": "DeepLab's caffe (deeplab-v2, TheLegendAli/DeepLab-Context) and hszhao/PSPNet",
    "MarginInnerProduct": "wy1iu/sphereface (SphereFace's angular-margin inner product)",
    "MultiStageMeanfield": "torrvision/crfasrnn (CRF as RNN)",
    "Proposal": "the C++ Faster R-CNN ports (e.g. happynear/caffe-windows, PVANet's caffe); "
                "py-faster-rcnn writes it as a Python layer",
    "RegionLoss": "the YOLOv2 Caffe ports (eric612/MobileNet-YOLO, Ewenwan/caffe-yolov2)",
    "Reverse": "the recurrent forks for text (the CTC branch of BVLC/caffe, MhLiao/TextBoxes_plusplus)",
    "ROIAlign": "the Mask R-CNN ports of caffe-fast-rcnn (e.g. zhaoweicai/cascade-rcnn)",
    "Transpose": "tianzhi0549/caffe (CTPN)",
}


def probable_fork(type_name):
    """The fork that defines `type_name`, or None."""
    return ELSEWHERE.get(type_name)
