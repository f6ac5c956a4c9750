"""Containers that remember where each key and item started in the file (YAML and JSON readers
build them; the message filler reports problems at those places)."""


class Mapping(dict):
    """A dict that remembers where it and each of its keys start: (line, column), 1-based."""

    def __init__(self, where=(None, None)):
        super().__init__()
        self.where, self.keys_at = where, {}


class Sequence(list):
    """A list that remembers where it and each of its items start."""

    def __init__(self, where=(None, None)):
        super().__init__()
        self.where, self.items_at = where, []
