"""Device names checked once, before any data is loaded: one clear line instead of a traceback."""

from __future__ import annotations

from lirdrec.errors import ConfigError

__all__ = ["check_device"]


def check_device(device: str | None, key: str = "device") -> str:
    """A usable torch device name; ``None`` picks CUDA when present, else the CPU.

    >>> check_device("cpu")
    'cpu'

    Raises:
        ConfigError: not a device name (``"gpu"``), or a CUDA/MPS device this machine or this
            torch build cannot provide (never a silent fall-back to the CPU).
    """
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError):
        raise ConfigError(f"{key}: {device!r} is not a device; use cpu, cuda, cuda:N or mps"
                          ) from None
    if dev.type == "cuda":
        if torch.version.cuda is None:
            raise ConfigError(f"{key}: {device!r} asked for, but this torch build has no CUDA "
                              f"(torch {torch.__version__}); install a CUDA build of torch or "
                              "use --device cpu")
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}: {device!r} asked for, but no CUDA device is visible")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{key}: {device!r} asked for, but only "
                              f"{torch.cuda.device_count()} CUDA device(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}: 'mps' asked for, but MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"{key}: {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return str(dev)
