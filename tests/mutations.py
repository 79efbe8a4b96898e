"""Mutation check of the model tests: one-line bugs applied one at a time must each fail a test.

Run from the repository root (a few minutes on two cores)::

    PYTHONPATH=$PWD python tests/mutations.py [--only ID ...] [--all-failures]

For every mutation the file is edited, the model tests run (``-x``: the first failing test is
the one reported; ``--all-failures`` lists every failing test instead, slower), and the file is
restored byte for byte (and checked against ``git diff``). A mutation whose text is no longer
found is reported as ``gone``, so that a refactor shows which entries to re-aim; a mutation
that no test catches is ``SURVIVED`` and the exit status is 1. The table is in docs/testing.md.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/test_model_formulas.py", "tests/test_models_common.py"]

M = "lirdrec/models/"
#: (id, file, original text, mutated text, what the bug is); the original must occur once
MUTATIONS = [
    # the bugs of issue 20
    ("lightgcn-reg-propagated", M + "lightgcn.py",
     "reg = emb_loss(self.user_emb[users], self.item_emb[pos_items], self.item_emb[neg_items])",
     "reg = emb_loss(u, item_emb[pos_items], item_emb[neg_items])",
     "LightGCN regularises the propagated instead of the layer-0 embeddings"),
    ("lattice-reg-factor", M + "lattice.py", "reg = 0.5 * (u.pow(2)", "reg = 1.0 * (u.pow(2)",
     "LATTICE regulariser factor 0.5 -> 1.0"),
    ("bm3-no-item-residual", M + "bm3.py", "out[self.num_users:] + self.item_emb",
     "out[self.num_users:]", "BM3 items lose the residual of their ID embedding"),
    ("vbpr-bias-ones", M + "vbpr.py", "nn.init.zeros_(self.item_linear.bias)",
     "nn.init.ones_(self.item_linear.bias)", "VBPR projection bias initialised to ones"),
    ("lightgcn-mean-to-sum", M + "lightgcn.py",
     'return out / (num_layers + 1) if combine == "mean" else out', "return out",
     "LightGCN propagation: layer mean -> sum"),
    ("lightgcn-default-sum", M + "lightgcn.py", 'layer_combine: str = "mean"',
     'layer_combine: str = "sum"', "LightGCN's default combination mean -> sum"),
    # shared pieces
    ("bpr-sign", M + "base.py", "softplus(neg_scores - pos_scores)",
     "softplus(pos_scores - neg_scores)", "BPR with the sign flipped (every BPR model)"),
    ("bpr-sum", M + "base.py", "softplus(neg_scores - pos_scores).mean()",
     "softplus(neg_scores - pos_scores).sum()", "BPR summed instead of averaged"),
    ("emb-loss-by-dim", M + "mf.py", "/ embeddings[-1].shape[0]", "/ embeddings[-1].shape[1]",
     "EmbLoss divided by the width instead of the row count"),
    ("adj-norm-power", "lirdrec/graphs/bipartite.py", ".float().pow_(-0.5)", ".float().pow_(-1.0)",
     "user-item graph normalised by D^-1 instead of D^-1/2"),
    # Pop
    ("pop-degree-plus-one", M + "pop.py", "torch.from_numpy(ds.item_degree())",
     "torch.from_numpy(ds.item_degree() + 1)", "Pop scores degree + 1"),
    # MF
    ("mf-no-neg-reg", M + "mf.py", "return rank + self.reg_weight * emb_loss(u, p, n)",
     "return rank + self.reg_weight * emb_loss(u, p)", "MF regulariser misses the negatives"),
    ("mf-bpr-swapped", M + "mf.py", "rank = bpr_loss((u * p).sum(-1), (u * n).sum(-1))",
     "rank = bpr_loss((u * n).sum(-1), (u * p).sum(-1))", "MF ranks negatives above positives"),
    # LightGCN
    ("lightgcn-no-layer0", M + "lightgcn.py", "    out = x\n", "    out = torch.zeros_like(x)\n",
     "LightGCN drops the layer-0 term"),
    # VBPR
    ("vbpr-visual-detached", M + "vbpr.py", "torch.cat([self.item_emb, visual], dim=1)",
     "torch.cat([self.item_emb, visual.detach()], dim=1)",
     "VBPR projection gets no gradient"),
    ("vbpr-reg-pos-twice", M + "vbpr.py", "return rank + self.reg_weight * emb_loss(u, p, n)",
     "return rank + self.reg_weight * emb_loss(u, p, p)", "VBPR regularises q+ twice, not q-"),
    # LATTICE
    ("lattice-frozen-no-alpha", M + "lattice.py", "vals.append(self.lambda_coeff * alpha[m] * v)",
     "vals.append(self.lambda_coeff * v)", "LATTICE frozen graphs not weighted by alpha"),
    ("lattice-h-unnormalised", M + "lattice.py", "+ F.normalize(item_h, dim=1)", "+ item_h",
     "LATTICE adds h unnormalised"),
    ("lattice-learned-row-norm", M + "lattice.py", "inv = deg.pow(-0.5)", "inv = deg.pow(-1.0)",
     "LATTICE learned graph normalised by D^-1"),
    ("lattice-adj-sym", M + "lattice.py", "1.0 / deg[row], (n, n)", "deg[row].rsqrt(), (n, n)",
     "LATTICE user-item graph with 1/sqrt(deg) instead of 1/deg"),
    # BM3
    ("bm3-reg-batch", M + "bm3.py", "emb_loss(user_emb, item_emb)",
     "emb_loss(user_emb[users], item_emb[pos_items])", "BM3 regularises the batch, not the tables"),
    ("bm3-no-feature-self-term", M + "bm3.py",
     "align = align + _cosine_gap(f_on, item_t) + _cosine_gap(f_on, f_t)",
     "align = align + _cosine_gap(f_on, item_t)", "BM3 misses the feature-feature alignment"),
    ("bm3-items-no-predictor", M + "bm3.py", "self.predictor(user_emb), self.predictor(item_emb)",
     "self.predictor(user_emb), item_emb", "BM3 scores items without the predictor"),
    ("bm3-dropout-inverted", M + "bm3.py", ".to(x.device) >= self.dropout",
     ".to(x.device) < self.dropout", "BM3 keeps with probability p instead of 1 - p"),
    # FREEDOM
    ("freedom-no-item-graph", M + "freedom.py",
     "return out[: self.num_users], out[self.num_users:] + h",
     "return out[: self.num_users], out[self.num_users:]", "FREEDOM items miss S^n E"),
    ("freedom-weights-swapped", M + "freedom.py", "mm_image_weight if j == lead else rest",
     "rest if j == lead else mm_image_weight", "FREEDOM image and text graph weights swapped"),
    ("freedom-prune-norm", M + "freedom.py", "val = du[u].rsqrt() * di[i].rsqrt()",
     "val = du[u].reciprocal() * di[i].rsqrt()", "FREEDOM pruned graph: 1/|N_u| not 1/sqrt"),
    ("freedom-layer-sum", M + "freedom.py", 'self.n_ui_layers, "mean")', 'self.n_ui_layers, "sum")',
     "FREEDOM sums the layers"),
    ("freedom-side-bpr-swapped", M + "freedom.py",
     "side = sum(bpr_loss((u * f[pos_items]).sum(-1), (u * f[neg_items]).sum(-1))",
     "side = sum(bpr_loss((u * f[neg_items]).sum(-1), (u * f[pos_items]).sum(-1))",
     "FREEDOM feature-side BPR with the sign flipped"),
    # LIRDRec
    ("lirdrec-layer-mean", M + "lirdrec.py",
     "return propagate_sum(self.adj, x.view(x.shape[0], -1), self.n_ui_layers)",
     "return propagate_sum(self.adj, x.view(x.shape[0], -1), self.n_ui_layers) / 3",
     "LIRDRec averages instead of summing its 2 layers"),
    ("lirdrec-no-residual", M + "lirdrec.py",
     "item_rep = residual_spmm(self.item_graph, item_rep, self.n_mm_layers, self.item_graph_t)",
     "item_rep = residual_spmm(self.item_graph, item_rep, self.n_mm_layers, self.item_graph_t)"
     " - item_rep", "LIRDRec items S^n E instead of E + S^n E"),
    ("lirdrec-reg-per-row", M + "lirdrec.py", "/ user_rep.numel()", "/ user_rep.shape[0]",
     "LIRDRec user regulariser per row, not per entry"),
    ("lirdrec-bpr-swapped", M + "lirdrec.py",
     "rank = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))",
     "rank = bpr_loss((u * neg).sum(-1), (u * pos).sum(-1))", "LIRDRec BPR sign flipped"),
    ("lirdrec-relu", M + "lirdrec.py", "nn.LeakyReLU(inplace=True)", "nn.ReLU(inplace=True)",
     "LIRDRec encoder ReLU instead of LeakyReLU"),
    ("lirdrec-knn-weights-swapped", M + "lirdrec.py",
     "float(mm_image_weight) if m == slot else rest",
     "rest if m == slot else float(mm_image_weight)",
     "LIRDRec kNN graph weights swapped"),
    ("pwc-theta-weight", M + "pwc.py", "+ self.w2 * self.theta", "+ self.w1 * self.theta",
     "PWC weights Theta by w1 instead of w2"),
    ("dct-unnormalised", "lirdrec/features/transform.py",
     'scipy.fft.dct(block, type=2, norm="ortho", axis=-1)',
     'scipy.fft.dct(block, type=2, norm="backward", axis=-1)',
     "shared channel: DCT not orthonormal"),
]


def run_tests(all_failures: bool) -> list[str]:
    """Ids of failing tests ([] if all pass)."""
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", "-rf",
           "-W", "ignore"]
    if not all_failures:
        cmd.append("-x")
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stdout
    failed = re.findall(r"^FAILED (\S+)", out, flags=re.M)
    if not failed and re.search(r"\d+ error", out):
        failed = re.findall(r"^ERROR (\S+)", out, flags=re.M) or ["(collection error)"]
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="mutation ids to run (default: all)")
    parser.add_argument("--all-failures", action="store_true", help="list every failing test")
    args = parser.parse_args()
    if run_tests(False):
        print("the model tests fail before any mutation; fix that first")
        return 2
    survived = 0
    for mid, rel, old, new, what in MUTATIONS:
        if args.only and mid not in args.only:
            continue
        path = ROOT / rel
        text = path.read_text()
        if text.count(old) != 1:
            print(f"{mid:30s} gone ({rel}: the original text occurs {text.count(old)} times)")
            continue
        start = text.index(old) + len(old) - len(old.lstrip("\n"))
        line = text[:start].count("\n") + 1
        try:
            path.write_text(text.replace(old, new))
            failed = run_tests(args.all_failures)
        finally:
            path.write_text(text)
        clean = subprocess.run(["git", "diff", "--quiet", "--", rel], cwd=ROOT).returncode == 0
        assert clean, f"{rel} not restored"
        status = "caught" if failed else "SURVIVED"
        survived += not failed
        print(f"{mid:30s} {rel}:{line}  {status}  {' '.join(failed) if failed else what}",
              flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
