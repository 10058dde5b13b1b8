r"""NT-Xent, the normalised temperature-scaled cross-entropy loss of SimCLR (Chen et al. 2020).

For a batch of N image pairs there are 2N views u_1..u_2N; view i's positive p(i) is the other view of the same image.
With z_i = f(u_i) / ||f(u_i)|| (L2-normalised inside the loss), s_ij = z_i . z_j and temperature t:

    loss = 1/(2N) * sum_i  -log( exp(s_{i,p(i)} / t) / sum_{k != i} exp(s_ik / t) )

i.e. the mean over all 2N anchors of the cross-entropy of picking the positive among the 2N - 1 other views.
The official TensorFlow SimCLR code sums the a->b and b->a cross-entropies (each a mean over N anchors) instead of
averaging them, so its reported value (and gradient) is exactly twice this one; multiply by 2 to compare curves.

Across processes (``torch.distributed`` initialised, ``gather_distributed=True``) the loss is the same global value
over all 2N views of all processes: each process scores its local 2n anchors against all 2N gathered candidates.
The gather's backward sums the candidates' gradients over processes, positives and the self-mask are offset by the
process's position, and the local loss is scaled by world_size / (2N) so that DDP's gradient averaging yields
exactly the gradient of the global mean, also when local batch sizes differ. The mean over processes of the returned
values equals the global loss.

Logits and the log-softmax are computed in float32 (float64 for float64 inputs) with autocast disabled. The dense
path keeps one 2n x 2N matrix for backward; the blockwise path never materialises it (running log-sum-exp over
tiles, probabilities recomputed tile by tile in backward), so its memory is linear in N.

This file is copied into saved model folders for ``trust_remote_code`` users: it imports only torch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

_MODES = ("auto", "dense", "blockwise")


def _dist_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks of possibly different lengths; backward sum-reduces and returns the local slice.

    The sum matters: every process's loss depends on this process's rows, so their gradient is the sum over processes.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rows: list[int]) -> torch.Tensor:
        rank, max_rows = dist.get_rank(), max(rows)
        padded = x.new_zeros((max_rows, *x.shape[1:]))
        padded[: x.shape[0]] = x
        chunks = [torch.empty_like(padded) for _ in rows]
        dist.all_gather(chunks, padded.contiguous())
        ctx.start, ctx.stop = sum(rows[:rank]), sum(rows[: rank + 1])
        return torch.cat([c[:r] for c, r in zip(chunks, rows, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.start : ctx.stop], None


def _indices(n_local: int, offset: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Global column of each local anchor (self) and of its positive; local rows are [view1; view2]."""
    local = torch.arange(2 * n_local, device=device)
    return offset + local, offset + (local + n_local) % (2 * n_local)


class _DenseNTXent(torch.autograd.Function):
    """sum_i scale * (logsumexp_{k != self(i)} l_ik - l_{i,pos(i)}) with l = a c^T / t, one 2n x 2N buffer.

    ``candidates=None`` means the anchors are the candidates (one process), which lets backward fuse both terms.
    Backward uses d/dl = scale * (softmax - onehot(pos)); the saved softmax is not modified so that
    ``retain_graph=True`` still works.
    """

    @staticmethod
    def forward(ctx, anchors, candidates, offset: int, inv_t: float, scale: float):
        c = anchors if candidates is None else candidates
        n = anchors.shape[0] // 2
        self_idx, pos_idx = _indices(n, offset, anchors.device)
        rows = torch.arange(2 * n, device=anchors.device)
        logits = torch.mm(anchors * inv_t, c.T)
        logits[rows, self_idx] = float("-inf")
        row_max, pos_logit = logits.amax(dim=1), logits[rows, pos_idx]
        # In-place softmax: the row-wise kernel works on each row from cache and needs no second 2n x 2N buffer.
        probs = torch._softmax(logits, 1, False, out=logits)
        # log-sum-exp = row max - log(largest probability), exact, and that probability is at least 1/(2N - 1), so
        # no underflow at any temperature and no host synchronisation to find rows needing care
        losses = (row_max - pos_logit) - probs.amax(dim=1).log()
        ctx.save_for_backward(anchors, candidates, probs, pos_idx)
        ctx.inv_t, ctx.scale = inv_t, scale
        return losses.sum() * scale

    @staticmethod
    def backward(ctx, grad_out):
        anchors, candidates, probs, pos_idx = ctx.saved_tensors
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            k = (grad_out * (ctx.scale * ctx.inv_t)).to(anchors.dtype)
            if candidates is None:
                # One process: pos is an involution, so both onehot terms gather the same rows.
                grad = torch.addmm(torch.mm(probs, anchors), probs.T, anchors)
                grad.sub_(anchors[pos_idx], alpha=2)
                return grad.mul_(k), None, None, None, None
            grad_a = torch.mm(probs, candidates).sub_(candidates[pos_idx]).mul_(k)
            grad_c = torch.mm(probs.T, anchors).index_add_(0, pos_idx, anchors, alpha=-1).mul_(k)
            return grad_a, grad_c, None, None, None


def _tile_logits(a: torch.Tensor, c: torch.Tensor, r0: int, c0: int, inv_t: float, offset: int) -> torch.Tensor:
    logits = torch.mm(a * inv_t, c.T)
    # Mask the anchors' own columns if this tile contains them.
    rows = torch.arange(a.shape[0], device=a.device)
    cols = rows + (offset + r0 - c0)
    inside = (cols >= 0) & (cols < c.shape[0])
    logits[rows[inside], cols[inside]] = float("-inf")
    return logits


class _BlockwiseNTXent(torch.autograd.Function):
    """Same value and gradient as ``_DenseNTXent``, computed over block x block tiles of the logit matrix.

    Forward keeps a running (max, sum of exp) per anchor; backward recomputes each tile's softmax from the saved
    log-sum-exp. Extra memory: one tile plus O(N) vectors.
    """

    @staticmethod
    def forward(ctx, anchors, candidates, offset: int, inv_t: float, scale: float, block: int):
        c = anchors if candidates is None else candidates
        n = anchors.shape[0] // 2
        _, pos_idx = _indices(n, offset, anchors.device)
        lse = torch.empty(2 * n, dtype=anchors.dtype, device=anchors.device)
        losses = torch.empty_like(lse)
        for r0 in range(0, 2 * n, block):
            a, pos = anchors[r0 : r0 + block], pos_idx[r0 : r0 + block]
            rows = torch.arange(a.shape[0], device=a.device)
            # A finite start keeps tiles whose entries are all masked from producing inf - inf.
            run_max = torch.full((a.shape[0],), torch.finfo(a.dtype).min, dtype=a.dtype, device=a.device)
            run_sum, pos_logit = torch.zeros_like(run_max), torch.zeros_like(run_max)
            for c0 in range(0, c.shape[0], block):
                tile = _tile_logits(a, c[c0 : c0 + block], r0, c0, inv_t, offset)
                # Take the positive's logit from the same tile as the normaliser so that they cancel exactly.
                here = (pos >= c0) & (pos < c0 + tile.shape[1])
                pos_logit[here] = tile[rows[here], pos[here] - c0]
                new_max = torch.maximum(run_max, tile.amax(dim=1))
                run_sum.mul_(torch.exp(run_max - new_max)).add_(tile.sub_(new_max[:, None]).exp_().sum(dim=1))
                run_max = new_max
            lse[r0 : r0 + block] = run_max + run_sum.log()
            losses[r0 : r0 + block] = (run_max - pos_logit) + run_sum.log()
        ctx.save_for_backward(anchors, candidates, lse, pos_idx)
        ctx.offset, ctx.inv_t, ctx.scale, ctx.block = offset, inv_t, scale, block
        return losses.sum() * scale

    @staticmethod
    def backward(ctx, grad_out):
        anchors, candidates, lse, pos_idx = ctx.saved_tensors
        c = anchors if candidates is None else candidates
        block, offset, inv_t = ctx.block, ctx.offset, ctx.inv_t
        with torch.autocast(device_type=anchors.device.type, enabled=False):
            grad_a = torch.zeros_like(anchors)
            grad_c = torch.zeros_like(c)
            for r0 in range(0, anchors.shape[0], block):
                a = anchors[r0 : r0 + block]
                for c0 in range(0, c.shape[0], block):
                    cb = c[c0 : c0 + block]
                    probs = _tile_logits(a, cb, r0, c0, inv_t, offset)
                    probs.sub_(lse[r0 : r0 + block, None]).exp_()
                    grad_a[r0 : r0 + block].addmm_(probs, cb)
                    grad_c[c0 : c0 + block].addmm_(probs.T, a)
            grad_a.sub_(c[pos_idx])
            grad_c.index_add_(0, pos_idx, anchors, alpha=-1)
            k = (grad_out * (ctx.scale * inv_t)).to(anchors.dtype)
            if candidates is None:
                return grad_a.add_(grad_c).mul_(k), None, None, None, None, None
            return grad_a.mul_(k), grad_c.mul_(k), None, None, None, None


class NTXentLoss(nn.Module):
    r"""NT-Xent over the 2N views of a batch of N image pairs (see the module docstring for the formula).

    Args:
        temperature: t in exp(s / t); SimCLR uses 0.1 at large batch sizes (0.5 in the CIFAR experiments).
        gather_distributed: with ``torch.distributed`` initialised, score local anchors against the views of all
            processes (the paper's setting). The gradient after DDP's averaging is exactly that of one process
            holding the whole batch; local batch sizes may differ across processes.
        mode: ``"dense"`` materialises the 2n x 2N logits (fastest at usual sizes), ``"blockwise"`` never does
            (memory linear in N), ``"auto"`` picks blockwise when the logits would exceed ``dense_limit`` elements.
        block_size: rows and columns per tile of the blockwise path.
        dense_limit: element count of the 2n x 2N logit matrix above which ``"auto"`` switches to blockwise.
        equal_batch_sizes: promise that every process passes the same n (as the pretraining loop does), which
            saves gathering the sizes; with unequal sizes the result is then wrong.

    Example:
        >>> loss_fn = NTXentLoss(temperature=0.1)
        >>> loss = loss_fn(model(view1).projection, model(view2).projection)  # two (n, d) tensors -> scalar
    """

    def __init__(
        self,
        temperature: float = 0.1,
        gather_distributed: bool = True,
        mode: str = "auto",
        block_size: int = 2048,
        dense_limit: int = 2**28,
        equal_batch_sizes: bool = False,
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.temperature = temperature
        self.gather_distributed = gather_distributed
        self.mode = mode
        self.block_size = block_size
        self.dense_limit = dense_limit
        self.equal_batch_sizes = equal_batch_sizes

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}, mode={self.mode!r}"

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Loss for the local views ``z1[i] <-> z2[i]``, each of shape (n, d); returns a scalar float tensor."""
        if z1.dim() != 2 or z1.shape != z2.shape:
            raise ValueError(f"z1 and z2 must both have shape (n, d), got {tuple(z1.shape)} and {tuple(z2.shape)}")
        if z1.shape[0] == 0:
            raise ValueError("NTXentLoss got an empty batch on this process: give every process at least one pair")
        rank, world = _dist_world() if self.gather_distributed else (0, 1)
        dtype = torch.promote_types(torch.promote_types(z1.dtype, z2.dtype), torch.float32)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            z = torch.cat([z1, z2]).to(dtype)
            z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
            n_local = z1.shape[0]
            if world > 1:
                # the size all-gather costs a host synchronisation per call: skipped when sizes are known equal
                sizes = [n_local] * world if self.equal_batch_sizes else _gather_sizes(n_local, z.device)
                candidates = _GatherRows.apply(z, [2 * s for s in sizes])
                offset, n_global = 2 * sum(sizes[:rank]), sum(sizes)
            else:
                candidates, offset, n_global = None, 0, n_local
            # world / (2N): DDP divides the summed gradients by world, leaving d(global mean)/d(params).
            scale = world / (2 * n_global)
            inv_t = 1.0 / self.temperature
            total = 2 * n_local * 2 * n_global
            if self.mode == "blockwise" or (self.mode == "auto" and total > self.dense_limit):
                return _BlockwiseNTXent.apply(z, candidates, offset, inv_t, scale, self.block_size)
            return _DenseNTXent.apply(z, candidates, offset, inv_t, scale)
