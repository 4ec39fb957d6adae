"""Device setup and data parallelism: which device a process runs on, and its rank when msrun launched it."""
import os

import mindspore as ms

from src.errors import UserError

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")


def launched_distributed():
    """True inside a multi-process launch: msrun sets MS_WORKER_NUM, Ascend rank tables RANK_SIZE."""
    for variable in ("MS_WORKER_NUM", "RANK_SIZE"):
        value = os.environ.get(variable, "")
        if value.isdigit() and int(value) > 1:
            return True
    return False


def available_targets():
    """The device targets this MindSpore installation can use here (the plugins it loaded at import).

    ms.hal.is_available answers the same but logs a warning per missing backend; set_device on a missing one
    raises with MindSpore's C++ call stack, so the choice is checked here first.
    """
    from mindspore._c_expression import MSContext
    context = MSContext.get_instance()
    return [target for target in DEVICE_TARGETS if context.is_pkg_support_device(target)]


def setup_device(device_target, device_id=None, threads=0):
    """threads > 0 caps MindSpore's CPU kernel threads (default: 25, more than this machine's cores): two
    processes sharing the cores each run best with one thread per core they get."""
    available = available_targets()
    if device_target not in available:
        raise UserError(f"--device_target {device_target}: no {device_target} is usable on this machine "
                        f"(MindSpore found: {', '.join(available) or 'none'}); use --device_target "
                        f"{available[0] if available else 'CPU'} or install MindSpore's {device_target} support")
    if device_id is None:
        ms.set_device(device_target)
    else:
        ms.set_device(device_target, device_id)
    if threads > 0 and device_target == "CPU":
        ms.device_context.cpu.op_tuning.threads_num(threads)


def init_data_parallel():
    """(rank, world size): initialises communication and DATA_PARALLEL mode when launched by msrun."""
    if not launched_distributed():
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init
    init()
    world = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=world)
    return get_rank(), world


def save_graphs(folder):
    """MindSpore's save_graphs: every graph compiled from now on is written as IR files under `folder`."""
    os.makedirs(folder, exist_ok=True)
    ms.set_context(save_graphs=True, save_graphs_path=folder)
