"""``.lst`` -> ``.rec``/``.idx`` packing and fold selection by index.

One record file holds every sample, packed once; the test set and each CV fold select
their samples by index (``subset_indices``) instead of packing the same JPEG five times
(docs/CONTRACTS.md, "records"). Packing reproduces ``mxnet/tools/im2rec.py --pack-label
--pass-through`` (the original JPEG bytes, the whole label as a float32 header, ``header.id``
= the ``.lst`` index); tests compare the bytes with im2rec's own output. The pair is written
under temporary names and renamed only after the record count equals the line count
(im2rec skips unreadable images silently, MXNET_TRAPS 4).
"""
import logging
import os
from pathlib import Path

import numpy as np
from mxnet import recordio
from mxnet.gluon.data import Sampler

from datasets.prepared.folder import read_manifest
from im2rec_tools.lst import read_lst

log = logging.getLogger(__name__)

RECORD_PREFIX = "records/all"


def pack_records(lst_path, root, rec_path=None):
    """Pack the images listed in a ``.lst`` into ``.rec`` + ``.idx``.

    Parameters
    ----------
    lst_path : str or Path
        Detection ``.lst`` (see :mod:`im2rec_tools.lst`).
    root : str or Path
        Folder the ``.lst`` paths are relative to.
    rec_path : str or Path, optional
        Output ``.rec``; default: next to the ``.lst`` with the same stem. The ``.idx`` goes
        beside it with the same stem (``RecordFileDataset`` looks for it there).

    Returns
    -------
    int
        Number of records written (equal to the number of lines).

    Raises
    ------
    ValueError
        A malformed line or duplicate index.
    OSError
        A listed image cannot be read. Nothing is left under the final names then.
    """
    lst_path, root = Path(lst_path), Path(root)
    rec_path = Path(rec_path) if rec_path else lst_path.with_suffix(".rec")
    idx_path = rec_path.with_suffix(".idx")
    items = read_lst(lst_path)
    if len({i for i, _, _ in items}) != len(items):
        raise ValueError(f"{lst_path}: duplicate record indices")
    tmp_rec = rec_path.with_name(f".{rec_path.name}.tmp")
    tmp_idx = idx_path.with_name(f".{idx_path.name}.tmp")
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        writer = recordio.MXIndexedRecordIO(str(tmp_idx), str(tmp_rec), "w")
        try:
            for idx, label, rel in items:
                data = (root / rel).read_bytes()
                # float32 label array as im2rec's IRHeader(0, item[2:], item[0], 0) packs it.
                header = recordio.IRHeader(0, np.asarray(label, dtype=np.float32), idx, 0)
                writer.write_idx(idx, recordio.pack(header, data))
        finally:
            writer.close()
        reader = recordio.MXIndexedRecordIO(str(tmp_idx), str(tmp_rec), "r")
        try:
            count = len(reader.keys)
        finally:
            reader.close()
        if count != len(items):
            raise RuntimeError(f"{tmp_rec}: {count} records for {len(items)} .lst lines")
        os.replace(tmp_rec, rec_path)
        os.replace(tmp_idx, idx_path)
    finally:
        for p in (tmp_rec, tmp_idx):
            if p.exists():
                p.unlink()
    log.info("packed %d records into %s", count, rec_path)
    return count


def record_ids(rec_path, id_by_index):
    """Sample id of each dataset position of a record file, read through ``header.id``.

    Parameters
    ----------
    rec_path : str or Path
        The ``.rec`` (its ``.idx`` beside it).
    id_by_index : dict
        ``.lst`` index -> sample id.

    Returns
    -------
    list of str
        ``ids[i]`` belongs to dataset item ``i`` (the order of the ``.idx`` keys, which is
        how ``RecordFileDataset`` enumerates).
    """
    rec_path = Path(rec_path)
    reader = recordio.MXIndexedRecordIO(str(rec_path.with_suffix(".idx")), str(rec_path), "r")
    try:
        ids = []
        for key in reader.keys:
            header, _ = recordio.unpack(reader.read_idx(key))
            if int(header.id) not in id_by_index:
                raise ValueError(f"{rec_path}: record {key} has header.id {header.id}, which "
                                 f"the manifest does not list")
            ids.append(id_by_index[int(header.id)])
    finally:
        reader.close()
    return ids


def load_detection_records(data_dir, coord_normalized=True):
    """Open ``DATA/records/all.rec`` as a GluonCV detection dataset.

    Parameters
    ----------
    data_dir : str or Path
        A ``prepare_data.py`` output folder.
    coord_normalized : bool
        Passed to ``RecordFileDetection``; the records store normalised boxes, so True gives
        pixel boxes (MXNET_TRAPS 1).

    Returns
    -------
    dataset : gluoncv.data.RecordFileDetection
        Items are ``(image NDArray HxWx3 RGB uint8, label (N, 6) float32)`` with label
        columns ``x1, y1, x2, y2, class, difficult`` in pixels.
    ids : list of str
        ``ids[i]`` is the sample id of ``dataset[i]``.
    """
    from gluoncv.data import RecordFileDetection

    data_dir = Path(data_dir)
    rec = data_dir / (RECORD_PREFIX + ".rec")
    if not rec.is_file() or not rec.with_suffix(".idx").is_file():
        raise FileNotFoundError(f"{rec} (+ .idx) missing; run prepare_data.py --out {data_dir}")
    id_by_index = {}
    for row in read_manifest(data_dir):
        if row.get("rec_idx", "") != "":
            id_by_index[int(row["rec_idx"])] = row["id"]
    ids = record_ids(rec, id_by_index)
    dataset = RecordFileDetection(str(rec), coord_normalized=coord_normalized)
    if len(dataset) != len(ids):
        raise RuntimeError(f"{rec}: dataset has {len(dataset)} items, index {len(ids)}")
    return dataset, ids


def subset_indices(ids, wanted_ids):
    """Dataset positions of the wanted sample ids, in the order of ``wanted_ids``.

    Parameters
    ----------
    ids : sequence of str
        From :func:`load_detection_records`.
    wanted_ids : iterable of str
        For example ``splits["folds"][0]["val"]``.

    Returns
    -------
    list of int

    Raises
    ------
    KeyError
        Some wanted ids are not in the record file (listed in the message).
    """
    pos = {sid: i for i, sid in enumerate(ids)}
    wanted = list(wanted_ids)
    missing = [w for w in wanted if w not in pos]
    if missing:
        raise KeyError(f"{len(missing)} id(s) not in the record file, e.g. {missing[:5]}")
    return [pos[w] for w in wanted]


def subset(dataset, indices):
    """A view of ``dataset`` holding only ``indices`` (a Gluon ``Dataset``, picklable).

    Works with ``.transform(...)`` and ``DataLoader`` workers like the full dataset.
    """
    return dataset.sample(IndexSampler(indices))


class IndexSampler(Sampler):
    """A Gluon sampler that yields a fixed list of indices (module level: picklable)."""

    def __init__(self, indices):
        self._idx = [int(i) for i in indices]

    def __iter__(self):
        return iter(self._idx)

    def __len__(self):
        return len(self._idx)
