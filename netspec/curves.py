"""Loss and accuracy curves as a PNG, drawn with Pillow (no plotting library needed)."""
import io
import math

from .utils import atomic_write

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189)]


def plot_curves(path, train_loss, tests, title="training"):
    """train_loss: [(iteration, loss)]; tests: {name: [(iteration, value)]}. Two panels:
    losses (training, and test outputs named like a loss) above, the other test outputs
    (accuracy ...) below."""
    from PIL import Image, ImageDraw
    width, height, margin = 900, 640, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((margin, 8), title, fill="black")
    losses = {"train loss": train_loss, **{f"test {k}": v for k, v in tests.items() if "loss" in k}}
    others = {f"test {k}": v for k, v in tests.items() if "loss" not in k}
    panels = [("loss", losses), ("accuracy" if others else "test outputs", others)]
    panel_h = (height - 2 * margin) // 2
    for p, (label, series) in enumerate(panels):
        top = margin // 2 + 20 + p * (panel_h + margin // 2)
        _panel(draw, (margin, top, width - margin // 2, top + panel_h), label, series)
    out = io.BytesIO()
    image.save(out, format="PNG")
    atomic_write(path, out.getvalue())


def _panel(draw, box, label, series):
    left, top, right, bottom = box
    draw.rectangle(box, outline="black")
    draw.text((left + 4, top + 4), label, fill="black")
    points = [(x, y) for values in series.values() for x, y in values if math.isfinite(y)]
    if not points:
        draw.text((left + 4, top + 20), "(no data)", fill="gray")
        return
    x0, x1 = min(x for x, _ in points), max(x for x, _ in points)
    y0, y1 = min(y for _, y in points), max(y for _, y in points)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)

    def at(x, y):
        return (left + (x - x0) / (x1 - x0) * (right - left), bottom - (y - y0) / (y1 - y0) * (bottom - top))
    for frac in (0, 0.5, 1):
        y = y0 + frac * (y1 - y0)
        draw.text((4, at(x0, y)[1] - 6), f"{y:.3g}", fill="black")
    draw.text((left, bottom + 4), f"{x0:g}", fill="black")
    draw.text((right - 40, bottom + 4), f"{x1:g} iter", fill="black")
    for i, (name, values) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        line = [at(x, y) for x, y in values if math.isfinite(y)]
        if len(line) > 1:
            draw.line(line, fill=colour, width=2)
        for px, py in line:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        draw.text((right - 150, top + 4 + 14 * i), name, fill=colour)
