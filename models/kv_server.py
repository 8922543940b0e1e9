"""The process of a dist kvstore server or scheduler (``DMLC_ROLE=server|scheduler``).

MXNet's launcher starts the trainer's script for every role. A server runs inside
``import mxnet`` (kvstore_server.py, reached through mxnet.contrib before mxnet/__init__ gets
to lr_scheduler) and unpickles the optimizer there, schedule included; ``models.schedules``
then finds no ``mx.lr_scheduler`` and the server dies ("init N first", MXNET_TRAPS 36). So
the script calls :func:`serve` before it imports MXNet: import MXNet as a worker, then run
the role.
"""
import os

ROLES = ("server", "scheduler")


def is_server():
    """Whether this process is a dist kvstore server or scheduler, not a worker."""
    return os.environ.get("DMLC_ROLE") in ROLES


def serve():
    """Serve until the workers finish, then exit the process (MXNet's server module does)."""
    role = os.environ["DMLC_ROLE"]
    os.environ["DMLC_ROLE"] = "worker"
    import mxnet  # noqa: F401
    import models.schedules  # noqa: F401  (importable before the optimizer is unpickled)
    os.environ["DMLC_ROLE"] = role
    from mxnet.kvstore.kvstore_server import _init_kvstore_server_module
    _init_kvstore_server_module()
