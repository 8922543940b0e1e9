"""Fused crops for the filter network: detected box | matched reference region | difference.

For every detection kept (score >= ``min_score``, the ``top_k`` best of its image) the box
content of the detection half and the most similar region of the contralateral (reference)
half, found by :func:`datasets.filter.similar.find_similar`, are resized to
``size``×``size`` and stacked with their difference into one 3-channel uint8 image (notes 002,
"过滤网络 / 准备数据集"). A crop is labelled +1 when its box overlaps a ground-truth box with
IoU >= ``iou``, else −1.

Channel 3 is the **signed difference, halved and shifted**: ``(c1 - c2) // 2 + 128``
(int arithmetic, exactly in [0, 255], so no clipping). Signed, because the sign carries the
finding: strain lesions are hypo-echoic (darker than the healthy side, c3 < 128) while a
bright artefact on one side gives c3 > 128; ``|c1 - c2|`` would map both to the same value.
A look-alike present on both sides (vessel, cyst) gives c3 ≈ 128 either way. Halving keeps
the full range without clipping; 128 (mid-grey) means "no difference".

On disk (``folder.build_crop_set``): ``OUT/<split>/<n>.png`` (channels stored as R, G, B =
c1, c2, c3) and ``OUT/<split>.csv`` with the columns of :data:`index.INDEX_COLUMNS`
(docs/CONTRACTS.md "Filter run"; ``path`` is relative to ``OUT``), written last and
atomically, so an index that exists always describes complete PNGs; plus
``OUT/<split>_preview.png`` and ``OUT/crops.json`` (the options the crops were built with).

One module per job: ``options`` (the argument group, search keywords, ``crops.json``),
``labels`` (which detections, their ±1 labels), ``fusion`` (search and fuse one crop),
``folder`` (build a crop folder or reuse one), ``index`` (the CSV and the preview).
"""
