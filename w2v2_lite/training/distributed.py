"""Data parallelism across processes started by `torchrun` (gloo on CPU, nccl on GPU).

    torchrun --nproc_per_node 2 -m w2v2_lite.cli pretrain configs/pretrain-tiny.json

Each worker trains on its own share of the batches; after the backward passes the
gradients are summed over all workers (`all_reduce_gradients`) and divided by the global
sample size, which is what fairseq does and equals one large batch. We reduce the
gradients ourselves instead of wrapping the model in `DistributedDataParallel`: the
division needs the global sample size anyway, and parameters that a step leaves without
a gradient (LayerDrop, the frozen body during fine-tuning) need no special handling.
Outside torchrun every function here is a no-op for a single process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def init_from_environment() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1); False when there is none."""
    if is_distributed():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def pick_device(device: str) -> str:
    """"auto" -> this worker's GPU when there is one, else the CPU."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def broadcast_parameters(model: nn.Module) -> None:
    """Every worker starts from rank 0's weights and buffers."""
    if not is_distributed():
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def all_reduce_sum(values: Tensor) -> Tensor:
    """The sum over workers of a small tensor (moved to the process group's device and back)."""
    if not is_distributed():
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else values.device
    reduced = values.to(device)
    dist.all_reduce(reduced)
    return reduced.to(values.device)


def all_reduce_gradients(parameters: list[nn.Parameter]) -> None:
    """Sum the gradients of `parameters` over all workers, in one flat buffer.

    A parameter without a gradient on this worker (a layer LayerDrop skipped) adds zeros.
    """
    if not is_distributed() or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for parameter in parameters:
        count = parameter.numel()
        parameter.grad = flat[offset:offset + count].view_as(parameter).clone()
        offset += count
