"""The phantom: synthetic dual-panel B-mode screenshots in the clinic's raw form.

``scene`` renders a screenshot (anatomy, look-alikes, lesions, speckle, display, layout),
``annotation`` burns red boxes into it or writes labelme shapes, ``generator`` writes a raw
set with ``truth.json``. Run it as ``python -m datasets.phantom --out RAW --num N --seed S``
(docs/CONTRACTS.md, "Raw phantom set").
"""
