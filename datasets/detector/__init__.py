"""The detector's data: fold subsets of the record file, YOLOv3 transforms and loaders
(``data``), the notes' extra augmentation (``augment``) and a fast exact random crop
(``fast_crop``)."""
