"""Containers that remember where each key and item started in the file (YAML and JSON readers
build them; the message filler reports problems at those places)."""


class Mapping(dict):
    """A dict that remembers where it and each of its keys start: (line, column), 1-based."""

    def __init__(self, where=(None, None)):
        super().__init__()
        self.where, self.keys_at = where, {}


class Sequence(list):
    """A list that remembers where it and each of its items start. `items_at` may be given as a
    function: a long list of numbers read in bulk finds its items' places only when asked."""

    def __init__(self, where=(None, None), items_at=None):
        super().__init__()
        self.where, self._items_at = where, [] if items_at is None else items_at

    @property
    def items_at(self):
        if callable(self._items_at):
            self._items_at = self._items_at()
        return self._items_at
