"""Reading training runs back: run folders, metric tables with intervals, confusion matrices."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import metrics as M

TABLE_METRICS = {"accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "auc": "AUC",
                 "log_loss": "log loss", "eer": "EER", "tpr_at_1fpr": "TPR at 1% FPR"}


@dataclass
class Run:
    """A finished training run folder (see helpers.training)."""

    path: Path
    config: dict
    history: pd.DataFrame
    predictions: pd.DataFrame
    metrics: dict

    @property
    def name(self) -> str:
        return self.config.get("run_name", self.path.name)

    @property
    def test(self) -> pd.DataFrame:
        return self.predictions[self.predictions.split == "test"]

    @property
    def val(self) -> pd.DataFrame:
        return self.predictions[self.predictions.split == "val"]

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on validation (0.5 for runs written before it was recorded)."""
        return float((self.metrics.get("threshold") or {}).get("value", 0.5))

    @property
    def val_auc(self) -> float:
        """Validation AUC of the kept epoch (frame level): what chooses "the best" run, never test."""
        if "val" in self.metrics:  # None there: validation held one class, AUC is undefined
            value = (self.metrics["val"].get("frame") or {}).get("auc")
        else:  # a run written before the protocol recorded validation metrics
            value = self.metrics.get("best_val_auc")
        return float(value) if value is not None else float("nan")


def load_run(path: str | Path) -> Run:
    """Read config.json, history.csv, predictions.csv and metrics.json of a run folder."""
    path = Path(path)
    missing = [n for n in ("config.json", "history.csv", "predictions.csv", "metrics.json") if not (path / n).exists()]
    if missing:
        raise FileNotFoundError(f"{path} is not a finished run: {', '.join(missing)} missing (train it, or RESUME it)")
    return Run(path, json.loads((path / "config.json").read_text()), pd.read_csv(path / "history.csv"),
               pd.read_csv(path / "predictions.csv", dtype={"video_id": str}), json.loads((path / "metrics.json").read_text()))


def find_runs(runs_dir: str | Path) -> list[Run]:
    """Every finished run under `runs_dir` (folders holding a metrics.json), sorted by name.

    Runs under a `_tuning` folder (the crop study's recipe search) are left out: they exist to
    choose settings on validation, not to be reported.
    """
    root = Path(runs_dir)
    return [load_run(p.parent) for p in sorted(root.rglob("metrics.json"))
            if "_tuning" not in p.relative_to(root).parts]


def fmt_interval(cell: dict | None, digits: int = 3) -> str:
    """{"value", "lo", "hi"} -> "0.812 [0.781, 0.840]"."""
    if not cell or cell.get("value") is None:
        return "n/a"
    if cell.get("lo") is None:
        return f"{cell['value']:.{digits}f}"
    return f"{cell['value']:.{digits}f} [{cell['lo']:.{digits}f}, {cell['hi']:.{digits}f}]"


def metrics_table(metrics: dict, level: str = "frame") -> pd.DataFrame:
    """One run's test metrics at `level` (frame or video) with 95% intervals, beside the majority baseline."""
    model = metrics[level]
    baseline = metrics["baseline"][level]
    rows = []
    for key, label in TABLE_METRICS.items():
        base = baseline.get(key)
        rows.append({"metric": label, "model [95% CI]": fmt_interval(model.get(key)),
                     "majority-class baseline": "n/a" if base is None or (isinstance(base, float) and np.isnan(base)) else f"{base:.3f}"})
    table = pd.DataFrame(rows).set_index("metric")
    table.attrs["n"] = model.get("n", {}).get("value")
    return table


def confusion(predictions: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """2x2 counts: rows = true label, columns = predicted label (FAKE when prob_fake > threshold)."""
    truth = pd.Categorical(np.where(M.labels_to_int(predictions["label"]) == 1, "FAKE", "REAL"), ["REAL", "FAKE"])
    called = pd.Categorical(np.where(predictions["prob_fake"].to_numpy() > threshold, "FAKE", "REAL"),
                            ["REAL", "FAKE"])
    table = pd.crosstab(pd.Series(truth, name="true"), pd.Series(called, name="predicted"), dropna=False)
    return table.reindex(index=["REAL", "FAKE"], columns=["REAL", "FAKE"], fill_value=0)


def call_flips(run_dir: str | Path) -> dict:
    """How many validation calls change between consecutive epochs (from val_probs.npy).

    The validation set is the same every epoch, so epoch-to-epoch accuracy changes are not independent
    binomial draws and a binomial band says nothing about them. What did move is the share of faces
    whose call (raw P(FAKE) > 0.5) flips from one epoch to the next: `flip_share` is its mean over epoch
    pairs, `net_change` the mean absolute change of the share called FAKE. Many flips with a small net
    change means the model reshuffles its calls (unstable training) while the curves look calm.
    """
    path = Path(run_dir) / "val_probs.npy"
    if not path.is_file():
        return {"flip_share": float("nan"), "net_change": float("nan"), "epochs": 0}
    probs = np.load(path)
    if probs.shape[0] < 2:
        return {"flip_share": float("nan"), "net_change": float("nan"), "epochs": int(probs.shape[0])}
    calls = probs > 0.5
    flips = (calls[1:] != calls[:-1]).mean(axis=1)
    return {"flip_share": float(flips.mean()), "net_change": float(np.abs(np.diff(calls.mean(axis=1))).mean()),
            "epochs": int(probs.shape[0])}


def stability_table(runs: list["Run"]) -> pd.DataFrame:
    """Per run: epochs, the share of validation calls flipping between consecutive epochs, and its net effect."""
    rows = [{"run": run.name, **call_flips(run.path)} for run in runs]
    table = pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
    return table.round(3)


def roc_curve(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, float]:
    """(fpr, tpr, auc) of a set of predictions, for plots.roc_curves."""
    y = M.labels_to_int(predictions["label"])
    fpr, tpr, _ = M.roc_points(y, predictions["prob_fake"])
    return fpr, tpr, float(M.binary_metrics(y, predictions["prob_fake"])["auc"])


def sanity_warnings(metrics: dict, level: str = "frame") -> list[str]:
    """Plain-language warnings for results that point at a bug rather than a weak model."""
    model, baseline = metrics[level], metrics["baseline"][level]
    notes = []
    auc = model.get("auc") or {}
    if auc.get("hi") is not None and auc["hi"] < 0.5:
        notes.append(f"AUC {fmt_interval(auc)} is below 0.5 with confidence: the scores rank REAL above FAKE. "
                     "Look for flipped labels (class index order of an ImageFolder, say) before anything else.")
    acc = model.get("accuracy") or {}
    base = baseline.get("accuracy")
    if acc.get("hi") is not None and base is not None and acc["hi"] < base:
        notes.append(f"accuracy {fmt_interval(acc)} is below the majority-class baseline {base:.3f}: "
                     "always answering the commoner class would do better.")
    if not notes:
        notes.append("no sign of a bug: AUC is not below chance and accuracy is not below the majority baseline "
                     "with confidence.")
    return notes


# --- The results notebook (07) ---------------------------------------------------------------------

# What the two course studies reported (accuracy, image-level split of 9,403 DFDC faces).
ORIGINAL_STUDIES = [
    {"model": "vit", "study": "ViT from scratch", "val_accuracy": 0.87, "test_accuracy": 0.81},
    {"model": "resnet101", "study": "ResNet101, ImageNet-pretrained", "val_accuracy": 0.88, "test_accuracy": 0.76},
    {"model": "resnet50", "study": "ResNet50, ImageNet-pretrained", "val_accuracy": None, "test_accuracy": 0.34},
]


def model_setup(run: Run) -> str:
    """What a run trained, in a few words: model, head, input size, epochs, and whether from ImageNet or scratch."""
    config = run.config
    model = config.get("model", "?")
    if model == "shortcut":
        return "shortcut (logistic regression)"
    head = " (pooled head)" if model == "vgg19" and (config.get("model_kwargs") or {}).get("head", "pooled") == "pooled" else ""
    parts = [f"{model}{head}"]
    if config.get("image_size"):
        parts.append(f"{config['image_size']} px")
    if config.get("epochs"):
        parts.append(f"{config['epochs']} ep")
    parts.append("ImageNet" if config.get("pretrained") else "from scratch")
    return ", ".join(parts)


def leaderboard(runs: list[Run], level: str = "frame") -> pd.DataFrame:
    """One row per run (test metrics with 95% intervals), ordered by validation AUC, plus the baseline.

    `model` says what trained (model_setup: head, input size, epochs, ImageNet or from scratch).

    The order and the `chosen` mark come from validation only; every run's test numbers are shown.
    """
    rows = []
    try:
        chosen = best_run(runs).name
    except ValueError:  # no network among the runs (the shortcut baseline alone, say): nothing is chosen
        chosen = None
    for run in runs:
        m = run.metrics[level]
        rows.append({"run": run.name, "model": model_setup(run), "variant": run.config.get("variant"),
                     "val AUC": round(run.val_auc, 3), "threshold": round(run.threshold, 3),
                     **{label: fmt_interval(m.get(key)) for key, label in TABLE_METRICS.items()},
                     "n": (m.get("n") or {}).get("value"), "chosen": "yes" if run.name == chosen else ""})
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values("val AUC", ascending=False, na_position="last", kind="stable")
    if runs:
        base = runs[0].metrics["baseline"][level]
        table = pd.concat([table, pd.DataFrame([{
            "run": "majority-class baseline", "model": "-", "variant": "-", "val AUC": None, "threshold": None,
            **{label: "n/a" if base.get(key) is None else f"{base[key]:.3f}" for key, label in TABLE_METRICS.items()},
            "n": base.get("n"), "chosen": ""}])], ignore_index=True)
    return table.set_index("run")


def best_run(runs: list[Run], level: str = "frame") -> Run:
    """The run with the highest VALIDATION AUC (frame level, the epoch-selection metric); never test.

    Ties go to the run listed first. `level` is kept for old callers; the choice never looks at test.
    """
    if not runs:
        raise ValueError("no finished runs: train with notebooks 04-06 first")
    # The shortcut baseline (helpers.shortcut) is a yardstick for the networks, not a candidate.
    networks = [r for r in runs if not is_baseline(r)]
    if not networks:
        raise ValueError("no network among the runs (only baselines): train with notebooks 04-06 first")
    scored = [r for r in networks if np.isfinite(r.val_auc)]
    if not scored:
        if all("val" in r.metrics for r in networks):
            return networks[0]  # validation held one class: nothing can be chosen on it (choice_note says so)
        raise ValueError("no run records a validation AUC: re-train with the current helpers.training")
    return max(scored, key=lambda r: r.val_auc)


def is_baseline(run: Run) -> bool:
    """A baseline run (the shortcut's logistic regression), listed beside the networks but never chosen."""
    return run.config.get("model") == "shortcut"


def shortcut_note(runs: list[Run], level: str = "video") -> str | None:
    """What the shortcut baseline says about the dataset, beside the chosen network (None without one)."""
    shortcut = [r for r in runs if is_baseline(r)]
    if not shortcut or len(shortcut) == len(runs):
        return None
    base, best = shortcut[0], best_run(runs)
    b, m = base.metrics[level]["auc"], best.metrics[level]["auc"]
    if b.get("value") is None or m.get("value") is None:
        return None
    gap = m["value"] - b["value"]
    verdict = ("so the networks learned more than these statistics can tell" if gap >= 0.10 else
               "so much of what the networks detect may be a shortcut in the data (colour, sharpness, "
               "compression, face size or position) rather than the manipulation itself")
    return (f"The shortcut baseline (logistic regression on per-face colour, sharpness, JPEG quality and face box "
            f"statistics, chosen on validation like the networks) reaches {level}-level test AUC {fmt_interval(b)}, "
            f"{gap:+.3f} from the chosen network's {fmt_interval(m)}: {verdict}.")


def choice_note(runs: list[Run]) -> str:
    """One sentence saying which run was chosen and how."""
    best = best_run(runs)
    n = sum(not is_baseline(r) for r in runs)
    if not np.isfinite(best.val_auc):
        return (f"No model could be chosen on validation: its split holds one class, so no validation AUC exists; "
                f"{best.name}, the first of {n} networks, is shown. Do not read its numbers as the study's best.")
    return (f"The chosen model is {best.name}: the highest validation AUC ({best.val_auc:.3f}) of {n} networks; "
            f"its decision threshold ({best.threshold:.3f}) and calibration were fitted on validation too, "
            "and no choice looked at the test split.")


def val_accuracy_at_best(run: Run) -> float | None:
    """Validation accuracy at the epoch the checkpoint was kept from."""
    epoch = run.metrics.get("best_epoch")
    rows = run.history[run.history.epoch == epoch] if epoch is not None else run.history.iloc[0:0]
    return float(rows["val/acc"].iloc[0]) if len(rows) and "val/acc" in rows else None


def compare_with_original(runs: list[Run]) -> pd.DataFrame:
    """The original studies' accuracies beside ours (the full-face run of that model chosen on validation)."""
    rows = []
    for ref in ORIGINAL_STUDIES:
        mine = [r for r in runs if r.config.get("model") == ref["model"] and r.config.get("variant") == "full"]
        ours = best_run(mine) if mine else None
        m = ours.metrics["frame"] if ours else {}
        rows.append({
            "model": ref["study"],
            "original val acc.": _pct(ref["val_accuracy"]), "original test acc.": _pct(ref["test_accuracy"]),
            "our val acc.": _pct(val_accuracy_at_best(ours)) if ours else "not run",
            "our test acc. [95% CI]": fmt_interval(m.get("accuracy")) if ours else "not run",
            "our test balanced acc.": fmt_interval(m.get("balanced_accuracy")) if ours else "not run",
            "our test AUC": fmt_interval(m.get("auc")) if ours else "not run",
            "majority baseline acc.": f"{ours.metrics['baseline']['frame']['accuracy']:.3f}" if ours else "",
        })
    return pd.DataFrame(rows).set_index("model")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def calibration_table(runs: list[Run], n_bins: int = 15) -> pd.DataFrame:
    """Per run: Platt slope/intercept and temperature fitted on validation; test ECE and log loss raw and after each."""
    rows = []
    for run in runs:
        val, test = run.val, run.test
        if "logit" not in run.predictions or len(val) == 0 or len(test) == 0:
            continue
        summary = M.calibration_summary(val.logit, M.labels_to_int(val.label), test.logit, test.label, n_bins)
        keep = ("platt_slope", "platt_intercept", "temperature", "log_loss_before", "log_loss_platt",
                "log_loss_temperature", "ece_before", "ece_platt", "ece_temperature")
        rows.append({"run": run.name, **{k: round(float(summary[k]), 4) for k in keep if k in summary}})
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def right_and_wrong(run: Run, n: int = 6, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test faces the run gets right (most confident first) and wrong (most confidently wrong first), at its threshold."""
    test = run.test.assign(y=M.labels_to_int(run.test.label))
    test = test.assign(correct=(test.prob_fake > run.threshold).astype(int) == test.y,
                       confidence=np.abs(test.prob_fake - run.threshold))
    right = test[test.correct].sort_values("confidence", ascending=False).head(n)
    wrong = test[~test.correct].sort_values("confidence", ascending=False).head(n)
    return right, wrong


def save_table(table: pd.DataFrame, folder: str | Path, name: str, md_columns: list[str] | None = None,
               note: str | None = None, index: bool = True) -> dict[str, Path]:
    """Write a table as `name.csv` (every column) and `name.md` (`md_columns`, then `note`), for the report."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "md": folder / f"{name}.md"}
    table.to_csv(paths["csv"], index=index)
    shown = (table[md_columns] if md_columns else table).copy()
    shown = shown.map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)  # "|" would split a row
    paths["md"].write_text(shown.to_markdown(index=index) + "\n" + (f"\n{note}\n" if note else ""), encoding="utf-8")
    return paths


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV table written by a notebook (a one-row Note when it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({"Note": [f"{path} does not exist: run the notebook that writes it first"]})
    return pd.read_csv(path)


def reliability_curves(runs: list[Run], n_bins: int = 10) -> dict[str, dict[str, pd.DataFrame]]:
    """Per run: the test reliability curve raw, after temperature scaling and after Platt scaling (fitted on val)."""
    curves = {}
    for run in runs:
        val, test = run.val, run.test
        if "logit" not in run.predictions or len(val) == 0 or len(test) == 0:
            continue
        y_val = M.labels_to_int(val.label)
        temperature = M.fit_temperature(val.logit, y_val)
        slope, intercept = M.fit_platt(val.logit, y_val)
        y = M.labels_to_int(test.label)
        curves[run.name] = {
            "raw": M.reliability_curve(y, M.apply_temperature(test.logit, 1.0), n_bins),
            f"T={temperature:.2f}": M.reliability_curve(y, M.apply_temperature(test.logit, temperature), n_bins),
            "Platt": M.reliability_curve(y, M.apply_platt(test.logit, slope, intercept), n_bins),
        }
    return curves


def explainable_runs(runs: list[Run]) -> list[Run]:
    """The full-face run of each model chosen on validation: the ones whose heatmaps the report shows."""
    by_model: dict[str, list[Run]] = {}
    for run in runs:
        if run.config.get("variant") == "full" and (run.path / "model.pt").is_file():
            by_model.setdefault(run.config.get("model"), []).append(run)
    return [best_run(group) for _, group in sorted(by_model.items())]


def band_mass_table(runs: list[Run], faces: pd.DataFrame, n: int = 64, seed: int = 0) -> pd.DataFrame:
    """Per run: the mean share of heatmap mass in the eyes and lower-face bands, and the bands' area shares."""
    from helpers import explain  # noqa: PLC0415 - pulls in torch models

    rows = []
    for run in runs:
        explained = explain.explain_faces(run.path, faces, n=n, seed=seed)
        summary = explain.band_mass_summary(explained.heatmaps, explained.landmarks, explained.labels)
        rows.append({"run": run.name, "method": explained.method,
                     **{k: round(float(v), 3) for k, v in summary.items()}, "faces": len(explained.heatmaps)})
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def at_chance(run: Run, level: str = "video") -> bool:
    """True when the run's test AUC interval at `level` includes 0.5 (or is missing)."""
    auc = run.metrics[level].get("auc") or {}
    return auc.get("lo") is None or auc["lo"] <= 0.5


def chance_verdicts(networks: list[Run], level: str = "video", alpha: float = 0.05) -> dict[str, dict]:
    """Per network name: {"verdict", "p_holm", "lo"}, its test AUC against chance with Holm's correction.

    Many networks are scored on one test set, so a 95% interval clearing 0.5 is a one-sided 2.5% test per
    network: of ten networks at chance, about one time in five at least one of them clears it by luck. A network is
    "above" chance when its one-sided bootstrap p of AUC <= 0.5 (`metrics.p_at_chance`), Holm-adjusted
    over all the networks, is below `alpha`; "unadjusted" when only its interval clears 0.5; else "chance".
    A run scored before the p was recorded counts with p = 1 in the adjustment (never "above").
    """
    aucs = [(run.metrics.get(level) or {}).get("auc") or {} for run in networks]
    raw = [a.get("p_chance") for a in aucs]
    adjusted = M.holm([p if p is not None and np.isfinite(p) else 1.0 for p in raw])
    out = {}
    for run, auc, p in zip(networks, aucs, adjusted):
        verdict = "chance" if at_chance(run, level) else ("above" if p < alpha else "unadjusted")
        out[run.name] = {"verdict": verdict, "p_holm": p, "lo": auc.get("lo")}
    return out


def why_not_learned(run: Run) -> str:
    """Why a run at chance did not learn, read from its own history (never from test).

    Three cases a reader can act on: the network did not fit even its training faces (too few epochs, too
    small an input, or too hard a recipe for it: more budget); it fitted them while validation stayed
    near 0.5 (it memorised the training identities: more data or more regularisation); or validation
    did rise, so the model learned something that did not carry over to the test identities.
    """
    history = run.history
    if history.empty or "val/auc" not in history or history["val/auc"].isna().all():
        return "no validation history to tell why"
    best = history.loc[history["val/auc"].idxmax()]
    val, epochs = float(best["val/auc"]), len(history)
    train = float(history["train/auc"].max()) if "train/auc" in history else float("nan")
    size = run.config.get("image_size")
    setting = f"{epochs} epochs at {size} px" if size else f"{epochs} epochs"
    if np.isfinite(train) and train < 0.7:
        return (f"it did not fit even its training faces (best train AUC {train:.2f} in {setting}): too small a "
                f"budget for a network of its size trained from scratch")
    if val < 0.6:
        return (f"it fitted its training faces (train AUC up to {train:.2f}) but validation AUC never passed "
                f"{val:.2f} in {setting}: it memorised the training identities instead of the manipulation")
    return (f"its validation AUC during training (the split's validation faces) reached {val:.2f} (epoch "
            f"{int(best.epoch) + 1} of {epochs}), but that did not carry over to the test identities")


def headline(runs: list[Run], crop_table: pd.DataFrame | None = None) -> dict:
    """The study's headline numbers and a paragraph that says them, computed from the runs.

    The run it reports is chosen on validation AUC (`best_run`); its test numbers are then read once.
    """
    best = best_run(runs)
    frame, video = best.metrics["frame"], best.metrics["video"]
    base = best.metrics["baseline"]["frame"]
    unit = (best.metrics.get("interval") or {}).get("unit", "video")
    unit = {"group": "identity groups", "video": "videos", "video_id": "videos"}.get(unit, f"{unit} groups")
    networks = [r for r in runs if not is_baseline(r)]
    text = [
        (f"{len(networks)} networks were trained; the one reported here, {best.name}, was chosen by its validation AUC "
         f"({best.val_auc:.3f}), with its threshold and calibration fitted on validation too."
         if np.isfinite(best.val_auc) else choice_note(runs)),
        f"On {video['n']['value']} test videos ({frame['n']['value']} faces) it reaches video-level AUC "
        f"{fmt_interval(video['auc'])} and face-level AUC {fmt_interval(frame['auc'])}, balanced accuracy "
        f"{fmt_interval(frame['balanced_accuracy'])} and calibrated log loss {fmt_interval(frame['log_loss'])} "
        f"(95% intervals resampling whole {unit}).",
        f"Always answering the commoner class would score accuracy {base['accuracy']:.3f} "
        f"(balanced accuracy 0.5, AUC 0.5); the chosen run's accuracy is {fmt_interval(frame['accuracy'])}.",
    ]
    if at_chance(best):
        text.append("Its video-level AUC interval includes 0.5: the chosen model is not distinguishable from chance.")
    below = [r for r in networks if at_chance(r)]
    if below:
        text.append(f"{len(below)} of {len(networks)} networks did not learn to tell FAKE from REAL here (their "
                    "video-level test AUC interval includes 0.5): "
                    + "; ".join(f"{r.name}, because {why_not_learned(r)}" for r in below) + ".")
    verdicts = chance_verdicts(networks)
    learned = [name for name, v in verdicts.items() if v["verdict"] == "above"]
    if learned:
        text.append(f"{len(learned)} of {len(networks)} networks are above chance (video-level AUC interval above 0.5, "
                    f"and one-sided bootstrap p of AUC <= 0.5 below 0.05 after Holm's correction for the "
                    f"{len(networks)} networks scored on this test set): " + ", ".join(learned) + ".")
    weak = {name: v for name, v in verdicts.items() if v["verdict"] == "unadjusted"}
    if weak:
        text.append(f"{len(weak)} more clear 0.5 only before that correction ("
                    + "; ".join(f"{name}: interval from {v['lo']:.3f}, Holm p {v['p_holm']:.2f}" for name, v in weak.items())
                    + f"): each 95% interval is a one-sided 2.5% test, so {len(networks)} networks at chance would "
                    f"give about {0.025 * len(networks):.1f} such results by luck alone; read them as weak evidence, "
                    "not as networks that learned.")
    note = shortcut_note(runs)
    if note:
        text.append(note)
    if crop_table is not None and "Verdict" in crop_table.columns:
        verdicts = "; ".join(f"{model}: {verdict}" for model, verdict in zip(crop_table["Model"], crop_table["Verdict"]))
        text.append(f"Crop study (full face vs eyes + lower face, paired group bootstrap on the same test faces): "
                    f"{verdicts}.")
    return {"best_run": best.name, "chosen_by": "validation AUC (frame level)", "val_auc": best.val_auc,
            "frame": frame, "video": video, "baseline": base, "text": " ".join(text)}


def save_headline(headline_: dict, folder: str | Path) -> Path:
    """headline.json, which `make report` prints at the end."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "headline.json"
    path.write_text(json.dumps(M.to_jsonable(headline_), indent=2))
    return path
