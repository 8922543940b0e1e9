"""Device selection shared by the trainers: ``--gpus 0,1`` data-parallel, ``--gpus ''`` CPU."""
import mxnet as mx


def add_device_arguments(parser):
    """Declare --gpus, --kvstore and --amp (an option group used by both trainers)."""
    g = parser.add_argument_group("devices")
    g.add_argument("--gpus", default="",
                   help="comma-separated GPU ids for data-parallel training, '' for CPU "
                        "(default: '%(default)s')")
    g.add_argument("--kvstore", default="device",
                   choices=["local", "device", "nccl", "dist_sync", "dist_device_sync",
                            "dist_async"],
                   help="gradient aggregation; dist_* for several machines through MXNet's "
                        "parameter server (default: %(default)s)")
    g.add_argument("--amp", action="store_true",
                   help="mixed precision (GPU only; MXNET_TRAPS 42)")
    return g


def contexts(gpus):
    """Parse a --gpus string into a list of contexts.

    Parameters
    ----------
    gpus : str
        '' (or None) for CPU, else comma-separated device ids such as '0,1'.

    Returns
    -------
    list of mx.Context
    """
    ids = [s.strip() for s in (gpus or "").split(",") if s.strip()]
    if not ids:
        return [mx.cpu()]
    try:
        ids = [int(s) for s in ids]
    except ValueError:
        raise ValueError(f"--gpus wants comma-separated integers such as '0,1', got {gpus!r}")
    available = mx.context.num_gpus()
    if available == 0:
        raise RuntimeError(f"--gpus {gpus!r} asked for GPUs but this MXNet build sees none "
                           "(CPU wheel, or no driver). Use --gpus '' for CPU, or install "
                           "requirements-cu112.txt on a CUDA box.")
    missing = [i for i in ids if i >= available]
    if missing:
        raise RuntimeError(f"--gpus {gpus!r}: device(s) {missing} do not exist; "
                           f"{available} GPU(s) visible")
    return [mx.gpu(i) for i in ids]


def check_amp(amp, ctxs):
    """AMP runs only on GPUs (FP16 gemm is not implemented on CPU: MXNET_TRAPS 42)."""
    if amp and any(c.device_type != "gpu" for c in ctxs):
        raise ValueError("--amp needs --gpus: MXNet's AMP has no CPU kernels for FP16 gemm")
