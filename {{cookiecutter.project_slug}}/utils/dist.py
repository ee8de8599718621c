"""torch.distributed in the few places the project needs it; every helper is a no-op in a plain run.
torchrun starts one process per device and tells each its place in environment variables (RANK, WORLD_SIZE...)."""

import os
import socket
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from utils.errors import UsageError


def launched_by_torchrun() -> bool:
    """torchrun sets these for every process it starts, even for a single one."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Only the main process (rank 0) writes logs, events and checkpoints."""
    return rank() == 0


def init_distributed(device: torch.device) -> torch.device:
    """Join the process group torchrun set up; return this process's device (its own GPU on CUDA)."""
    if device.type == "mps":
        raise UsageError("device: 'mps' runs one process; train without torchrun, or on cpu or cuda")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def all_reduce(tensor: torch.Tensor, op: dist.ReduceOp = dist.ReduceOp.SUM) -> torch.Tensor:
    """Reduce ``tensor`` in place over all processes."""
    if is_distributed():
        dist.all_reduce(tensor, op=op)
    return tensor


def copy_buffers_from_rank_0(module: torch.nn.Module) -> None:
    """Give every process rank 0's buffers (BatchNorm's running statistics). Each process updates its own in
    its last training step; rank 0's are the ones checkpoints hold, so validation uses them everywhere."""
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def on_rank_0(action: Callable[[], Any], share_result: bool = True) -> Any:
    """Run ``action`` on rank 0 only and hand its refusal, and its result unless not ``share_result`` (then the
    other processes get None), to every process: none goes on alone after a refusal."""
    result, refusal = None, None
    if is_main():
        try:
            result = action()
        except UsageError as err:
            refusal = str(err)
    if is_distributed():
        box = [(result if share_result else None, refusal)]
        dist.broadcast_object_list(box, src=0)
        if not is_main():
            result, refusal = box[0]
    if refusal is not None:
        raise UsageError(refusal)
    return result


def launch_command(arguments: str) -> str:
    """The command that runs ``python <arguments>`` the way this process was started: under torchrun, with as
    many processes per node and nodes (a resume refuses another number part way through an epoch)."""
    if not launched_by_torchrun():
        return f"python {arguments}"
    processes = int(os.environ["WORLD_SIZE"])
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", processes))
    nodes = processes // per_node
    if nodes == 1:
        return f"torchrun --nproc_per_node={per_node} {arguments}"
    return f"torchrun --nnodes={nodes} --nproc_per_node={per_node} <your rendezvous options> {arguments}"


def describe_world() -> str:
    """World size, backend and which ranks run on which host, for the first lines of the log."""
    hosts: list[str | None] = [None] * world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    layout = {host: [r for r, h in enumerate(hosts) if h == host] for host in dict.fromkeys(hosts)}
    nodes = "; ".join(f"{host}: ranks {', '.join(map(str, ranks))}" for host, ranks in layout.items())
    return f"world size {world_size()}, backend {dist.get_backend()}, {nodes}"
