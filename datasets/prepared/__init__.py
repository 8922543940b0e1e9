"""Raw annotations -> prepared data (the DATA folder of docs/CONTRACTS.md, "Prepared data").

Reading the clinic's annotations: red boxes burnt into the pixels (``redbox``), labelme JSON
(``labelme``), raw folders (``raw_sources``), images (``images``), bad files (``errors``).
Making the samples: border crop and midline split (``preprocess``), VOC XML (``voc``),
grouped test split and folds (``splits``), class lists (``classes``), the staged output
folder (``staging``). Reading a prepared folder back: ``folder`` (the one reader of
manifest.csv and splits.json), ``recovery`` (phantom truth vs prepared boxes),
``lesion_contrast`` (how visible each lesion is), ``export`` (YOLO txt / COCO JSON for
PyTorch ports).
"""
