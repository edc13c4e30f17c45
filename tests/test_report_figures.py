"""Figures read at the size the book shows them: captions legible, titles clear of them (issue 19 item 5)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np


def test_gallery_title_clears_the_captions_and_captions_are_legible():
    from covid_lib.report import saliency as rsal

    img = np.zeros((32, 32), np.uint8)
    mask = np.zeros((32, 32))
    mask[8:24, 8:24] = 1
    caption = "cohen COVID+, p=0.93\nshare 0.41 (area 0.22)"
    fig = rsal.gallery([(img, np.ones((32, 32)), mask, caption)] * 8)
    title = fig.suptitle("highest in-lung share", fontsize=8, y=1.02)  # as chapter 12 titles a gallery
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = title.get_window_extent(renderer)
    captions = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() == caption]
    assert captions and all(c.get_fontsize() >= 9 for c in captions)
    for c in captions:
        assert not box.overlaps(c.get_window_extent(renderer))
    plt.close(fig)
