"""Bug check of a chance-level training loss: can the text variant (first 4 SmolLM2 layers, real
hm items, the runs' lr) fit ONE fixed batch of 8 training pairs? Prints per step the loss, the
within-batch mean cosine of the item vectors e and of the pooled states h, and gradient norms.
If it can, gradients reach the head, the LLM and the scale, and the loss is right; a training
loss that stays at ln(2P - 1) over a one-epoch run then means no transfer between batches.

OMP_NUM_THREADS=1 PYTHONPATH=$PWD python results/notellm2/overfit_check.py LR STEPS PAIRS_NPZ
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lirdrec.data.raw_items import read_raw_items
from lirdrec.encoders.notellm2 import NoteLLM2, load_llm
from lirdrec.encoders.notellm2.data import item_inputs
from lirdrec.features.recipe import Recipe

torch.manual_seed(999)
lr = float(sys.argv[1]) if len(sys.argv) > 1 else 5e-4
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
pairs_npz = sys.argv[3] if len(sys.argv) > 3 else "/work/runs/nl2hm/hm/text/pairs.npz"
raw = read_raw_items(Recipe.from_yaml("datasets/hm/recipe.yaml"), "../shared/data/hm")
items, _ = item_inputs(
    raw, text_template="{colour_group_name} {product_type_name}. {detail_desc}", vision=None
)
tok, llm = load_llm(
    "SmolLM2-135M-Instruct", cache_dir=Path("/work/runs/nl2hm/cache/llm"), num_layers=4
)
model = NoteLLM2(llm, tok, variant="text")
pairs = np.load(pairs_npz)["train"][:8]
idx = np.concatenate([pairs[:, 0], pairs[:, 1]])
print(
    "titles:",
    [items.titles[i] for i in idx[:4]],
    "| partners:",
    [items.titles[i] for i in idx[8:12]],
)
model.train()
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.001)
groups = {
    "embed": model.llm.get_input_embeddings().weight,
    "head": model.head.weight,
    "tau": model.temperature,
}
layer0 = [p for n, p in model.named_parameters() if ".layers.0." in n]


def cos_mean(x):
    x = F.normalize(x.float(), dim=1)
    s, n = x @ x.T, len(x)
    return ((s.sum() - n) / (n * (n - 1))).item()


for step in range(steps):
    t0 = time.time()
    out = model(**model.batch(items, idx))
    loss = model.loss(out)
    opt.zero_grad()
    loss.backward()
    gn = {k: (v.grad.norm().item() if v.grad is not None else None) for k, v in groups.items()}
    gn["layer0"] = sum(p.grad.norm().item() ** 2 for p in layer0 if p.grad is not None) ** 0.5
    total = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
    opt.step()
    print(
        f"step {step}: loss {loss.item():.4f} cos(e) {cos_mean(out['e_mm']):.4f} "
        f"cos(h) {cos_mean(out['h_mm']):.4f} gradnorm total {total:.3g} "
        + " ".join(f"{k} {v:.3g}" for k, v in gn.items())
        + f" ({time.time() - t0:.1f}s)",
        flush=True,
    )
