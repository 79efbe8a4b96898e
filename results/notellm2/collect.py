"""Collect the NoteLLM-2 runs into results/notellm2/*.json and print the markdown tables.

python results/notellm2/collect.py [RUNS]        # ml100k; RUNS default /work/runs/notellm2
python results/notellm2/collect.py /work/runs/nl2hm hm     # hm (run_hm.sh) -> i2i_hm.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
VARIANTS = ["text", "basic", "micl", "late_fusion", "notellm2"]
KS = ["Recall@10", "Recall@20", "Recall@50", "Recall@100"]
NAMES = {
    "image_feat.npy": "frozen EfficientNet-Lite0 poster vector (shared image_feat.npy)",
    "text_feat.npy": "frozen text vector of the shared ml100k (another repository's model)",
    "minilm_title_plot.npy": 'frozen MiniLM-L6 of "title. plot"',
    "untuned SmolLM2-135M-Instruct": "untuned SmolLM2 (first 4 layers), text prompt, pooled state",
    "text": "fine-tuned LLM, text only (NoteLLM-like)",
    "basic": "NoteLLM-2 basic (image in the prompt)",
    "micl": "NoteLLM-2 mICL",
    "late_fusion": "NoteLLM-2 late fusion",
    "notellm2": "NoteLLM-2 mICL + late fusion",
}
NAMES_HM = {
    **NAMES,
    "image_feat.npy": "frozen EfficientNet-Lite0 photo vector (shared image_feat.npy)",
    "text_feat.npy": "frozen MiniLM-L6 of name, type, colour, department, description "
    "(shared text_feat.npy)",
}


def fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def num_items(data: Path) -> int:
    """Rows of the dataset's i_id_mapping.csv (header excluded)."""
    return len((data / "i_id_mapping.csv").read_text().strip().splitlines()) - 1


def random_recall(pool: int, ks=(10, 20, 50, 100)) -> dict[str, float]:
    """Recall@K of a uniformly random ranking: the partner's rank is uniform on 0..pool-1."""
    return {f"Recall@{k}": min(k, pool) / pool for k in ks}


def main(runs: Path, dataset: str = "ml100k") -> int:
    ml = runs / dataset
    names = NAMES_HM if dataset == "hm" else NAMES
    out = {"baselines": [], "variants": {}}
    base = ml / "baselines.jsonl"
    if base.is_file():
        out["baselines"] = [json.loads(x) for x in base.read_text().splitlines() if x.strip()]
    extra = sorted(
        d.name for d in ml.glob("*") if (d / "metrics.json").is_file() and d.name not in VARIANTS
    )  # repeats: other seeds (`run_hm.sh variant_as basic_s1 basic --seed 1`), eval_at_start
    for v in VARIANTS + extra:
        m = ml / v / "metrics.json"
        if m.is_file():
            metrics = json.loads(m.read_text())
            cfg = json.loads((ml / v / "config.json").read_text())
            vec = ml / v / "item_vectors.npy"
            out["variants"][v] = {
                "test_by_input": metrics.get("test_by_input", {"both": metrics["test"]}),
                "valid": metrics["valid"],
                "best_step": metrics["best_step"],
                "history": metrics["history"],
                "pairs_per_second": metrics["pairs_per_second"],
                "seconds": metrics["seconds"],
                "pairs": cfg["pairs"],
                "args": cfg["args"],
                "step_losses": metrics.get("step_losses", []),
                "at_start": metrics.get("at_start", {}),
            }
            if vec.is_file():  # collapse check: mean pairwise cosine of the item vectors
                e = np.load(vec, allow_pickle=False).astype(np.float64)
                e /= np.linalg.norm(e, axis=1, keepdims=True)
                n = len(e)
                s_ = e.sum(axis=0)
                out["variants"][v]["mean_cosine"] = float((s_ @ s_ - n) / (n * (n - 1)))
                if (ml / v / "pairs.npz").is_file():  # memorised? Recall on the training pairs
                    from lirdrec.evaluate.i2i import i2i_recall

                    train = np.load(ml / v / "pairs.npz", allow_pickle=False)["train"]
                    out["variants"][v]["train_pairs"] = i2i_recall(e.astype(np.float32), train)
    neglect = ml / "neglect.jsonl"  # `run_hm.sh neglect V`: image-only / text-only inputs
    if neglect.is_file():
        for line in neglect.read_text().splitlines():
            r = json.loads(line)
            if r["what"] in out["variants"]:
                tbi = out["variants"][r["what"]]["test_by_input"]
                tbi[r["input"]] = {k: r[k] for k in (*KS, "queries")}
    if out["baselines"]:
        data = Path("../shared/data") / dataset  # run from the repository root
        queries = out["baselines"][0]["queries"]
        if data.is_dir():
            pool = num_items(data) - queries
            out["random"] = {"pool": pool, "queries": queries, **random_recall(pool)}
    rows = []
    for m in sorted((runs / "down").glob("*/metrics.json")):
        model, mods, seed = m.parent.name.rsplit("-", 2)
        r = json.loads(m.read_text())
        rows.append(
            {
                "model": model,
                "modalities": mods.replace("+", ","),
                "seed": seed[1:],
                "best_epoch": r["best_epoch"],
                "valid Recall@20": r["valid"]["Recall@20"],
                "test Recall@20": r["test"]["Recall@20"],
                "test NDCG@20": r["test"]["NDCG@20"],
            }
        )
    if rows:
        out["downstream"] = rows
    (HERE / f"i2i_{dataset}.json").write_text(json.dumps(out, indent=2))

    print("| vectors | queries | " + " | ".join(KS) + " |")
    print("|:--|--:|" + "--:|" * len(KS))
    if "random" in out:
        r = out["random"]
        print(
            f"| random ranking (expected, pool of {r['pool']:,}) | {r['queries']} | "
            + " | ".join(fmt(r[k]) for k in KS)
            + " |"
        )
    for r in out["baselines"]:
        name = names.get(r["what"], r["what"])
        print(f"| {name} | {r['queries']} | " + " | ".join(fmt(r.get(k)) for k in KS) + " |")
    for v, r in out["variants"].items():
        if v not in VARIANTS:
            continue
        t = r["test_by_input"]["both"]
        print(f"| {names[v]} | {t['queries']} | " + " | ".join(fmt(t.get(k)) for k in KS) + " |")
    print()
    print("| variant | input: image + text | image only | text only |")
    print("|:--|--:|--:|--:|")
    for v, r in out["variants"].items():
        if v not in VARIANTS:
            continue
        t = r["test_by_input"]
        cells = [fmt(t.get(m, {}).get("Recall@100")) for m in ("both", "image", "text")]
        print(f"| {names[v]} | " + " | ".join(cells) + " |")
    print()
    print(
        "| variant | best step | train pairs/s | run seconds | mean training loss "
        "| loss steps 1-10 / last 10 | tau | mean cosine between items "
        "| valid R@100 untrained / trained | train-pair R@10 / R@100 (queries) |"
    )
    print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for v, r in out["variants"].items():
        if v not in VARIANTS:
            continue
        h = r["history"][-1]
        sl = r["step_losses"]
        first_last = f"{np.mean(sl[:10]):.3f} / {np.mean(sl[-10:]):.3f}" if sl else "-"
        start = r["at_start"].get("valid", {}).get("Recall@100")
        print(
            f"| {v} | {r['best_step']} | {r['pairs_per_second']} | {r['seconds']} | "
            f"{h['loss']:.4f} | {first_last} | {h['temperature']:.3f} | "
            f"{fmt(r.get('mean_cosine'))} | {fmt(start)} / {fmt(r['valid']['Recall@100'])} | "
            + (
                f"{tp['Recall@10']:.3f} / {tp['Recall@100']:.3f} ({tp['queries']})"
                if (tp := r.get("train_pairs"))
                else "-"
            )
            + " |"
        )
    if extra or any(r["at_start"] for r in out["variants"].values()):
        print()
        print(
            "| run | variant | seed | test R@10 | test R@100 | test R@100 untrained "
            "| valid R@100 untrained / trained | loss steps 1-10 / last 10 "
            "| test R@100 image only / text only |"
        )
        print("|:--|:--|--:|--:|--:|--:|--:|--:|--:|")
        runs_ = [v for v in VARIANTS + extra if v in out["variants"]]
        runs_.sort(key=lambda v: (VARIANTS.index(out["variants"][v]["args"]["variant"]), v))
        for v in runs_:
            r = out["variants"][v]
            if not (v in extra or r["at_start"] or f"{v}_s1" in out["variants"]):
                continue
            t, a, sl = r["test_by_input"]["both"], r["at_start"], r["step_losses"]
            print(
                f"| {v} | {r['args']['variant']} | {r['args']['seed']} | {fmt(t['Recall@10'])} | "
                f"{fmt(t['Recall@100'])} | {fmt(a.get('test', {}).get('Recall@100'))} | "
                f"{fmt(a.get('valid', {}).get('Recall@100'))} / {fmt(r['valid']['Recall@100'])} | "
                + (f"{np.mean(sl[:10]):.3f} / {np.mean(sl[-10:]):.3f}" if sl else "-")
                + f" | {fmt(r['test_by_input'].get('image', {}).get('Recall@100'))} / "
                f"{fmt(r['test_by_input'].get('text', {}).get('Recall@100'))} |"
            )
    if rows:
        import statistics as st

        print()
        print(
            "| model | modalities | seeds | best epochs | test Recall@20 | test NDCG@20 "
            "| mean R@20 / N@20 |"
        )
        print("|:--|:--|:--|:--|:--|:--|:--|")
        groups: dict = {}
        for r in rows:
            groups.setdefault((r["model"], r["modalities"]), []).append(r)
        for (model, mods), g in groups.items():
            g.sort(key=lambda r: r["seed"])
            r20 = [r["test Recall@20"] for r in g]
            n20 = [r["test NDCG@20"] for r in g]
            print(
                f"| {model} | {mods} | {', '.join(r['seed'] for r in g)} | "
                f"{', '.join(str(r['best_epoch']) for r in g)} | "
                f"{' / '.join(f'{x:.4f}' for x in r20)} | {' / '.join(f'{x:.4f}' for x in n20)} | "
                f"{st.mean(r20):.4f} / {st.mean(n20):.4f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(
        main(
            Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/runs/notellm2"),
            sys.argv[2] if len(sys.argv) > 2 else "ml100k",
        )
    )
