"""Infrastructure below every stage: run folders (``infra.runs``) and atomic file writes
(``infra.atomic``).

Which way the dependency goes: every package and script may import ``infra``; ``infra``
imports only the standard library and nothing of the project (not ``eval/``, ``models/``,
``datasets/``, ``im2rec_tools/``, nor a script). Why: the writers and the run folder serve
every stage (``datasets/`` writes VOC XML and manifests, ``im2rec_tools/`` the ``.lst``,
``models/`` checkpoints, ``eval/`` reports and Cartucho folders, each script its run
folder). Kept in ``eval/``, as they were, an XML writer depended on the scoring package;
kept here, scoring depends on infrastructure and not the reverse, and ``eval/`` plus
``infra/`` still run without MXNet for the PyTorch ports.

The import rules of the project (README "Import rules"; ``tests/test_import_rules.py``
reads every module and script with ``ast``, imports inside functions included):

- ``infra/``: standard library only, nothing of the project;
- ``eval/``: standard library, numpy, matplotlib, and of the project only ``eval/`` and
  ``infra/`` (no MXNet/GluonCV, nothing of ``models/``, ``im2rec_tools/``, ``datasets/``);
- modules (package code) never import scripts (top-level ``*.py``, ``bench/``);
- no import cycles between modules and scripts.
"""
