"""JSON of the Caffe schema, read by a small strict parser that keeps where every key and
list item starts."""
import bisect
import json
import math
import re


from ..errors import NetspecError
from .located import Mapping, Sequence
from .text import shown


_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_NUMBER_LIST = re.compile(rf"\[[ \t\n\r]*{_NUMBER.pattern}(?:[ \t\n\r]*,[ \t\n\r]*{_NUMBER.pattern}){{63,}}"
                          r"[ \t\n\r]*\]", re.ASCII)
_WORD = re.compile(r"[^\s,:\[\]{}]{1,12}|.", re.S)
_LITERALS = {"true": True, "false": False, "null": None,
             "NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


class _JsonReader:
    """Strict JSON with positions: every object and array knows where its parts start."""

    def __init__(self, text, path):
        self.text, self.path = text, path
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def where(self, i):
        line = bisect.bisect_right(self.line_starts, i)
        return line, i - self.line_starts[line - 1] + 1

    def fail(self, i, expected):
        found = "end of file" if i >= len(self.text) else shown(_WORD.match(self.text, i).group())
        line, col = self.where(i)
        raise NetspecError(f"malformed JSON: found {found}; expected {expected}",
                           file=self.path, line=line, column=col)

    def skip(self, i):
        return _SPACE.match(self.text, i).end()

    def document(self):
        value, end = self.value(self.skip(0))
        end = self.skip(end)
        if end != len(self.text):
            self.fail(end, "end of file")
        return value

    def value(self, i):
        ch = self.text[i:i + 1]
        if ch == "{":
            return self.object(i)
        if ch == "[":
            return self.array(i)
        if ch == '"':
            return self.string(i)
        for word, value in _LITERALS.items():
            if self.text.startswith(word, i):
                return value, i + len(word)
        m = _NUMBER.match(self.text, i)
        if m and m.group():
            number = m.group()
            try:
                return (float(number) if any(c in number for c in ".eE") else int(number)), m.end()
            except ValueError:          # more digits than Python converts
                self.fail(i, "a number of reasonable length")
        self.fail(i, "a value (object, array, string, number, true, false or null)")

    def string(self, i):
        try:
            return json.decoder.scanstring(self.text, i + 1, True)
        except json.JSONDecodeError as e:
            self.fail(e.pos, f"a valid string ({e.msg})")

    def object(self, i):
        mapping = Mapping(self.where(i))
        i = self.skip(i + 1)
        if self.text.startswith("}", i):
            return mapping, i + 1
        while True:
            if not self.text.startswith('"', i):
                self.fail(i, "a quoted key")
            key, end = self.string(i)
            if key in mapping:
                line, col = self.where(i)
                raise NetspecError(f"found key '{key}' a second time in one object; expected each "
                                   "key once", file=self.path, line=line, column=col)
            mapping.keys_at[key] = self.where(i)
            i = self.skip(end)
            if not self.text.startswith(":", i):
                self.fail(i, "':' after the key")
            mapping[key], i = self.value(self.skip(i + 1))
            i = self.skip(i)
            if self.text.startswith("}", i):
                return mapping, i + 1
            if not self.text.startswith(",", i):
                self.fail(i, "',' or '}'")
            i = self.skip(i + 1)

    def array(self, i):
        bulk = _NUMBER_LIST.match(self.text, i)
        if bulk:                # a weight blob: its numbers read at once, their places when asked
            seq = Sequence(self.where(i), lambda: [self.where(m.start()) for m in
                                                   _NUMBER.finditer(self.text, i, bulk.end())])
            seq.extend(json.loads(bulk.group()))
            return seq, bulk.end()
        seq = Sequence(self.where(i))
        i = self.skip(i + 1)
        if self.text.startswith("]", i):
            return seq, i + 1
        while True:
            seq.items_at.append(self.where(i))
            item, i = self.value(i)
            seq.append(item)
            i = self.skip(i)
            if self.text.startswith("]", i):
                return seq, i + 1
            if not self.text.startswith(",", i):
                self.fail(i, "',' or ']'")
            i = self.skip(i + 1)


def load_json(text, path):
    try:
        return _JsonReader(text, path).document()
    except RecursionError:
        raise NetspecError("malformed JSON: nested too deeply", file=path) from None
