"""``language``: does language help? ASIF against vision-only baselines on the same anchor images.

Devillers et al. (2021) asked whether language supervision helps vision models generalise. Here
the same anchor images are used twice: by ASIF with their captions, and by vision-only
classifiers on the image embeddings with *labels* instead of captions. An anchor image's label
is the class its captions name (:data:`CLASS_WORDS`: the class word, its plural and common
synonyms, found in at least half of the image's captions and more often than any other class);
images whose captions name no class, or two, are unlabelled.

For each test set (CIFAR-10; texture-shape photos, edges and silhouettes) the table has:

- ``asif`` on all N anchor pairs (language only: it needs no label) and label transfer;
- at equal data, on the labelled images only: ASIF with their captions, nearest class mean and
  k-NN with their labels;
- few-shot, at equal data: 1, 5 and 10 labelled images per class (``draws`` random draws,
  averaged): ASIF with those images' pairs, nearest class mean and k-NN with their labels.

Example:
    >>> words = {"dog": ("dog", "dogs", "puppy"), "cat": ("cat", "cats")}
    >>> caption_labels(["a", "a", "b", "c"], ["A dog runs", "two dogs", "a cat", "a dog and a cat"], words)
    {'a': 0, 'b': 1, 'c': -1}
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np

from asif.eval.suites.common import (
    AnchorPool,
    AnchorSpec,
    Scored,
    TestSet,
    accuracy_interval,
    bootstrap_accuracies,
    bootstrap_draws,
    encoder_space,
    format_table,
    image_folder_test,
    knn_scores,
    nearest_class_mean_scores,
    photo_test,
    result,
    score_label_transfer,
    score_of,
    score_zero_shot,
)
from asif.eval.workbench import Workbench
from asif.settings import DEFAULT, Setting

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CLASS_WORDS",
    "FULL",
    "TEST_CLASSES",
    "caption_labels",
    "format_language",
    "plot_language",
    "run_language",
]

_CARS = ("car", "cars", "automobile", "automobiles", "sedan", "sedans", "convertible", "jeep")
_CARS += ("jeeps", "taxi", "taxis", "cab", "cabs", "limousine", "suv", "wagon", "racecar")
_TRUCKS = ("truck", "trucks", "lorry", "lorries", "van", "vans", "semi")
_BOATS = ("boat", "boats", "ship", "ships", "sailboat", "sailboats", "yacht", "yachts", "canoe")
_BOATS += ("canoes", "kayak", "kayaks", "ferry", "liner", "schooner", "motorboat", "speedboat")
_BOATS += ("lifeboat", "fireboat", "gondola", "catamaran", "yawl", "raft", "rowboat")
_PLANES = ("airplane", "airplanes", "aeroplane", "plane", "planes", "jet", "jets", "airliner")
_PLANES += ("aircraft", "warplane", "airship")
_BIRDS = ("bird", "birds", "pigeon", "pigeons", "seagull", "seagulls", "gull", "gulls", "duck")
_BIRDS += ("ducks", "goose", "geese", "swan", "swans", "parrot", "eagle", "owl", "hen", "rooster")
_BIRDS += ("chicken", "chickens", "crow", "sparrow", "robin", "finch", "goldfinch", "heron")
_BIRDS += ("pelican", "penguin", "penguins", "flamingo", "stork", "hummingbird", "toucan")
_BIRDS += ("macaw", "cockatoo", "peacock", "ostrich", "vulture", "woodpecker", "magpie", "jay")
_BIRDS += ("quail", "partridge", "grouse", "egret", "albatross", "sandpiper", "junco", "bunting")
_BIRDS += ("chickadee", "lorikeet", "hornbill", "ptarmigan", "bustard", "spoonbill", "bittern")
_BIRDS += ("merganser", "drake", "kite", "coucal", "jacamar", "bulbul", "limpkin", "coot")
_CATS = ("cat", "cats", "kitten", "kittens", "kitty", "tabby", "cougar")
_DOGS = ("dog", "dogs", "puppy", "puppies", "pup", "pups", "retriever", "terrier", "terriers")
_DOGS += ("spaniel", "poodle", "hound", "beagle", "collie", "husky", "bulldog", "chihuahua")
_DOGS += ("dachshund", "pug", "labrador", "schnauzer", "mastiff", "greyhound", "dalmatian")
_DOGS += ("corgi", "sheepdog", "pomeranian", "samoyed", "malamute", "rottweiler", "doberman")

CLASS_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "cifar10": {
        "airplane": _PLANES,
        "automobile": _CARS,
        "bird": _BIRDS,
        "cat": _CATS,
        "deer": ("deer", "fawn", "fawns", "elk", "moose", "reindeer", "stag", "antelope"),
        "dog": _DOGS,
        "frog": ("frog", "frogs", "toad", "toads", "bullfrog"),
        "horse": ("horse", "horses", "pony", "ponies", "foal", "stallion", "mare", "sorrel"),
        "ship": _BOATS,
        "truck": _TRUCKS,
    },
    "texture-shape": {
        "airplane": _PLANES,
        "bear": ("bear", "bears", "grizzly"),
        "bicycle": ("bicycle", "bicycles", "bike", "bikes", "bicyclist", "cyclist", "cyclists"),
        "bird": _BIRDS,
        "boat": _BOATS,
        "bottle": ("bottle", "bottles", "jug"),
        "car": _CARS,
        "cat": _CATS,
        "chair": ("chair", "chairs", "armchair", "throne", "stool"),
        "clock": ("clock", "clocks"),
        "dog": _DOGS,
        "elephant": ("elephant", "elephants", "tusker"),
        "keyboard": ("keyboard", "keyboards"),
        "knife": ("knife", "knives", "cleaver"),
        "oven": ("oven", "ovens", "stove", "rotisserie"),
        "truck": _TRUCKS,
    },
}
"""Per class list, the words whose presence in a caption names each class (whole words, any
case). A phrase in :data:`NOT_WORDS` cancels its class's words (a "dirt bike" is no bicycle)."""

NOT_WORDS: dict[str, tuple[str, ...]] = {
    "bicycle": ("dirt bike", "dirt bikes", "motor bike", "bike rider"),
    "bear": ("teddy bear", "teddy bears"),
    "kite": (),
}

TEST_CLASSES: dict[str, str] = {
    "cifar10": "cifar10",
    "photos": "texture-shape",
    "edges": "texture-shape",
    "silhouettes": "texture-shape",
}
"""The class list (a key of :data:`CLASS_WORDS`) of each test set."""

FULL: dict[str, Any] = {
    "pairs": ("default", "large"),
    "anchors": "flickr8k+coco-mini+imagenet-sample",
    "n_clean": 2000,
    "draws": 5,
}
"""The benchmark's setting (``--full``)."""


def caption_labels(
    paths: Sequence[str],
    captions: Sequence[str],
    words: Mapping[str, Sequence[str]],
    not_words: Mapping[str, Sequence[str]] = NOT_WORDS,
) -> dict[str, int]:
    """The class index (into ``words``' keys) each image's captions name, -1 for none or a tie.

    An image (a path, with one caption per pair) is labelled c when c's words are in at least
    half of its captions and in more of them than any other class's words.
    """
    classes = list(words)
    patterns = [re.compile(r"\b(" + "|".join(map(re.escape, words[c])) + r")\b") for c in classes]
    cancels = [
        re.compile(r"\b(" + "|".join(map(re.escape, not_words[c])) + r")\b")
        if not_words.get(c)
        else None
        for c in classes
    ]
    counts: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}
    for path, caption in zip(paths, captions, strict=True):
        text = caption.lower()
        hits = np.array(
            [
                bool(p.search(text)) and not (x is not None and x.search(text))
                for p, x in zip(patterns, cancels, strict=True)
            ],
            dtype=np.int64,
        )
        counts[path] = counts.get(path, np.zeros(len(classes), np.int64)) + hits
        seen[path] = seen.get(path, 0) + 1
    out = {}
    for path, count in counts.items():
        best = int(np.argmax(count))
        second = np.partition(count, -2)[-2] if len(count) > 1 else 0
        ok = count[best] > 0 and 2 * count[best] >= seen[path] and count[best] > second
        out[path] = best if ok else -1
    return out


def run_language(
    *,
    pairs: Sequence[str] = ("default",),
    anchors: str = "coco-mini+imagenet-sample",
    tests: Sequence[str] = ("cifar10", "photos", "edges", "silhouettes"),
    shots: Sequence[int] = (1, 5, 10),
    draws: int = 3,
    knn_k: int = 10,
    settings: Sequence[Setting] = (DEFAULT,),
    label_transfer_k: int | None = 20,
    n_clean: int = 1000,
    limit: int | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    templates: Any = "cifar",
    data_root: Any = None,
    cache: bool | str | None = True,
    batch_size: int = 64,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """ASIF zero-shot against nearest-class-mean and k-NN on the same anchor images, at equal data.

    Args:
        pairs: encoder pairs.
        anchors: the anchor-set spec (:class:`~asif.eval.suites.common.AnchorSpec`).
        tests: test sets (keys of :data:`TEST_CLASSES`).
        shots: labelled images per class of the few-shot rows.
        draws: random few-shot draws (averaged).
        knn_k: neighbours of k-NN (at most the number of training images).
        settings, label_transfer_k: ASIF settings (the first is used at equal data) and the
            label-transfer baseline's k (None: off).
        n_clean: CIFAR-10 test images (class-balanced); limit caps every test set.
        n_boot, seed: bootstrap resamples over test images and the seed.
        templates, data_root, cache, batch_size, show_progress_bar: as the other suites.

    Returns:
        ``{"suite": "language", "config", "tables": {"accuracy", "labelled"}, "notes"}``.
    """
    started = time.perf_counter()
    spec = AnchorSpec.parse(anchors)
    unknown = [t for t in tests if t not in TEST_CLASSES]
    if unknown:
        raise ValueError(f"unknown test sets {unknown}; choose from {sorted(TEST_CLASSES)}.")
    rows: list[dict[str, Any]] = []
    labelled_rows: list[dict[str, Any]] = []
    sizes: dict[str, int] = {}
    for pair in pairs:
        space = encoder_space(
            pair, cache=cache, batch_size=batch_size, show_progress_bar=show_progress_bar
        )
        test_sets = _test_sets(tests, n_clean, limit, seed, data_root)
        for test in test_sets.values():
            test.embed(space, templates)
        sizes = {n: t.n_units for n, t in test_sets.items()}
        boot = {n: bootstrap_draws(t.n_units, n_boot, seed) for n, t in test_sets.items()}
        exclude = test_sets["photos"].paths if "photos" in test_sets else []
        pool = AnchorPool.load(
            space, pair, spec.sources, exclude=exclude, root=data_root, seed=seed
        )
        everything = pool.anchors(spec)
        chosen = pool.rows(spec)
        pair_paths = [pool.sources[s]["paths"][i] for s, r in chosen.items() for i in r]
        pair_captions = [pool.sources[s]["captions"][i] for s, r in chosen.items() for i in r]
        for family in dict.fromkeys(TEST_CLASSES[t] for t in test_sets):
            mine = {n: t for n, t in test_sets.items() if TEST_CLASSES[n] == family}
            classnames = next(iter(mine.values())).classnames
            words = CLASS_WORDS[family]
            if list(words) != list(classnames):
                raise ValueError(
                    f"{family}: class words {list(words)} do not match the classes {classnames}."
                )
            labels = caption_labels(pair_paths, pair_captions, words)
            images = sorted(p for p, c in labels.items() if c >= 0)
            image_labels = np.array([labels[p] for p in images], dtype=np.int64)
            counts = np.bincount(image_labels, minlength=len(classnames))
            labelled_rows.append(
                {
                    "pair": pair,
                    "classes": family,
                    **dict(zip(classnames, counts.tolist(), strict=True)),
                }
            )
            embedded = _image_rows(pool, chosen)
            image_vectors = np.stack([embedded[p] for p in images]) if images else np.zeros((0, 1))
            ctx = {
                "pair": pair,
                "classes": family,
                "tests": mine,
                "boot": boot,
                "n_classes": len(classnames),
            }
            for setting in settings:
                rows.append(
                    _row(
                        ctx,
                        f"asif ({setting.name})",
                        "all pairs",
                        len(set(pair_paths)),
                        len(everything),
                        _zero_shot(everything, mine, setting),
                    )
                )
            if label_transfer_k:
                scored = {
                    n: score_label_transfer(everything, t, label_transfer_k)
                    for n, t in mine.items()
                }
                rows.append(
                    _row(
                        ctx,
                        "label-transfer",
                        "all pairs",
                        len(set(pair_paths)),
                        len(everything),
                        scored,
                    )
                )
            first = settings[0]
            keep = set(images)
            rows += [
                r
                for r, _ in _equal_data(
                    ctx,
                    pool,
                    chosen,
                    keep,
                    image_vectors,
                    image_labels,
                    first,
                    knn_k,
                    "labelled images",
                )
            ]
            for m in shots:
                runs = []
                for d in range(draws):
                    rng = np.random.default_rng([seed, d, m])
                    picked = np.concatenate(
                        [
                            rng.permutation(np.flatnonzero(image_labels == c))[:m]
                            for c in range(len(classnames))
                        ]
                    ).astype(np.int64)
                    runs.append(
                        _equal_data(
                            ctx,
                            pool,
                            chosen,
                            {images[i] for i in picked},
                            image_vectors[picked],
                            image_labels[picked],
                            first,
                            knn_k,
                            f"{m}-shot",
                        )
                    )
                if runs and runs[0]:
                    rows += _average(ctx, runs)
    notes = [
        f"anchors: {spec.name}; labels: the class a majority of an image's captions name (CLASS_WORDS); "
        "labelled images per class in tables.labelled.",
        "equal data: 'labelled images' and 'k-shot' rows of a block use exactly the same images; "
        "ASIF gets their captions (all pairs of each image), the vision-only baselines their labels.",
        f"few-shot rows: mean over {draws} random draws (classes with fewer labelled images use "
        "all they have); <test>_sd is the spread over draws. k-NN: cosine-weighted votes, "
        f"k = min({knn_k}, training images).",
        "photos (imagenet-sample) are left out of the anchors; intervals: 95% percentile bootstrap over test images.",
    ]
    config = {
        "pairs": list(pairs),
        "anchors": spec.name,
        "tests": list(tests),
        "shots": list(shots),
        "draws": draws,
        "knn_k": knn_k,
        "settings": [asdict(s) for s in settings],
        "label_transfer_k": label_transfer_k,
        "n_clean": n_clean,
        "limit": limit,
        "test_images": sizes,
        "n_boot": n_boot,
        "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return result("language", config, {"accuracy": rows, "labelled": labelled_rows}, notes)


def _test_sets(
    tests: Sequence[str], n_clean: int, limit: int | None, seed: int, root: Any
) -> dict[str, TestSet]:
    out = {}
    for name in tests:
        if name == "cifar10":
            n = n_clean if limit is None else min(n_clean, limit)
            out[name] = image_folder_test("cifar10-test", name=name, limit=n, seed=seed, root=root)
        elif name == "photos":
            out[name] = photo_test(root=root, limit=limit)
        else:
            out[name] = image_folder_test(
                f"texture-shape/{name}", name=name, limit=limit, seed=seed, root=root
            )
    return out


def _image_rows(pool: AnchorPool, chosen: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each anchor image's embedding, by path."""
    return {
        pool.sources[s]["paths"][i]: pool.sources[s]["images"][i]
        for s, r in chosen.items()
        for i in r
    }


def _zero_shot(anchors: Any, tests: Mapping[str, TestSet], setting: Setting) -> dict[str, Scored]:
    bench = Workbench(anchors, gpu=False)
    return {n: score_zero_shot(bench, t, setting) for n, t in tests.items()}


def _equal_data(
    ctx: dict[str, Any],
    pool: AnchorPool,
    chosen: Mapping[str, np.ndarray],
    keep: set[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    setting: Setting,
    knn_k: int,
    data: str,
) -> list[tuple[dict[str, Any], dict[str, Scored]]]:
    """ASIF on the pairs of the images in ``keep``, NCM and k-NN on their labels."""
    if not len(labels):
        return []
    rows_kept = {
        s: np.array([i for i in r if pool.sources[s]["paths"][i] in keep], dtype=np.int64)
        for s, r in chosen.items()
    }
    anchors = pool.anchors(AnchorSpec(tuple(chosen)), rows=rows_kept)
    tests, n = ctx["tests"], len(keep)
    n_classes = ctx["n_classes"]
    methods = [
        (f"asif ({setting.name})", len(anchors), _zero_shot(anchors, tests, setting)),
        (
            "vision NCM",
            n,
            {
                k: score_of(nearest_class_mean_scores(vectors, labels, n_classes, t.images), t)
                for k, t in tests.items()
            },
        ),
        (
            "vision k-NN",
            n,
            {
                k: score_of(knn_scores(vectors, labels, n_classes, t.images, knn_k), t)
                for k, t in tests.items()
            },
        ),
    ]
    return [
        (_row(ctx, method, data, n, pairs, scored), scored) for method, pairs, scored in methods
    ]


def _row(
    ctx: dict[str, Any],
    method: str,
    data: str,
    n_images: float,
    n_pairs: float,
    scored: Mapping[str, Scored],
    spread: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A table row: accuracies on each test set, their intervals (and spread over draws)."""
    row: dict[str, Any] = {
        "pair": ctx["pair"],
        "classes": ctx["classes"],
        "data": data,
        "method": method,
        "n_images": n_images,
        "n_pairs": n_pairs,
    }
    for name, s in scored.items():
        row[name] = s.accuracy
        if spread is not None:
            row[f"{name}_sd"] = spread[name]
        if len(ctx["boot"][name]):
            row[f"{name}_ci"] = accuracy_interval(bootstrap_accuracies(s, ctx["boot"][name]))
    return row


def _average(
    ctx: dict[str, Any], runs: list[list[tuple[dict[str, Any], dict[str, Scored]]]]
) -> list[dict[str, Any]]:
    """One row per method over few-shot draws: per-image correctness averaged over the draws,
    then bootstrapped; ``<test>_sd`` is the spread of the draws' accuracies."""
    out = []
    for position, (first, _) in enumerate(runs[0]):
        group = [run[position] for run in runs]
        mean = {
            name: Scored(np.mean([scored[name].correct for _, scored in group], axis=0), test)
            for name, test in ctx["tests"].items()
        }
        spread = {
            name: float(np.std([scored[name].accuracy for _, scored in group])) for name in mean
        }
        n_images = float(np.mean([row["n_images"] for row, _ in group]))
        n_pairs = float(np.mean([row["n_pairs"] for row, _ in group]))
        row = _row(ctx, first["method"], first["data"], n_images, n_pairs, mean, spread)
        row["draws"] = len(group)
        out.append(row)
    return out


def format_language(results: dict[str, Any]) -> str:
    """The suite's tables as text."""
    tables = results["tables"]
    lines = [
        "language suite: zero-shot ASIF vs vision-only baselines on the same anchor images; top-1 (%) with 95% intervals"
    ]
    for family in dict.fromkeys(r["classes"] for r in tables["accuracy"]):
        rows = [r for r in tables["accuracy"] if r["classes"] == family]
        tests = [t for t, f in TEST_CLASSES.items() if f == family and t in rows[0]]
        shown = [
            r | {"n_images": f"{r['n_images']:.0f}", "n_pairs": f"{r['n_pairs']:.0f}"} for r in rows
        ]
        columns = [
            ("pair", "pair"),
            ("data", "data"),
            ("method", "method"),
            ("n_images", "images"),
            ("n_pairs", "pairs"),
        ]
        lines += [f"\n{family} classes", format_table(shown, [*columns, *((t, t) for t in tests)])]
    for r in tables["labelled"]:
        counts = ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("pair", "classes"))
        lines.append(f"labelled anchor images ({r['pair']}, {r['classes']}): {counts}")
    lines += [f"note: {n}" for n in results.get("notes", [])]
    return "\n".join(lines)


def plot_language(results: dict[str, Any], pair: str | None = None) -> Figure:
    """Accuracy against labelled images per class (1, 5, 10, all labelled) for ASIF and the
    vision-only baselines at equal data; ASIF on all pairs as a dashed line. One panel per test set."""
    import matplotlib.pyplot as plt

    rows = results["tables"]["accuracy"]
    pair = pair or rows[0]["pair"]
    rows = [r for r in rows if r["pair"] == pair]
    tests = [t for t in TEST_CLASSES if any(t in r for r in rows)]
    fig, axes = plt.subplots(
        1, len(tests), figsize=(4.4 * len(tests), 4.0), layout="constrained", squeeze=False
    )
    steps = list(dict.fromkeys(r["data"] for r in rows if r["data"] != "all pairs"))
    steps = sorted(
        (s for s in steps if s.endswith("-shot")), key=lambda s: int(s.split("-")[0])
    ) + [s for s in steps if not s.endswith("-shot")]
    for ax, test in zip(axes[0], tests, strict=True):
        mine = [r for r in rows if test in r]
        for method in dict.fromkeys(r["method"] for r in mine if r["data"] != "all pairs"):
            points = [
                (steps.index(r["data"]), 100 * r[test])
                for r in mine
                if r["method"] == method and r["data"] in steps
            ]
            if points:
                ax.plot(*zip(*sorted(points), strict=True), marker="o", label=method)
        for r in mine:
            if r["data"] == "all pairs":
                ax.axhline(
                    100 * r[test],
                    ls="--",
                    lw=1,
                    color="grey" if "label" in r["method"] else "black",
                    label=f"{r['method']}, all {r['n_pairs']} pairs",
                )
        ax.set_xticks(range(len(steps)), steps, fontsize=8)
        ax.set_xlabel("labelled anchor images per class (same images for every method)")
        ax.set_ylabel("top-1 (%)")
        ax.set_title(test, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"language suite: {pair} encoders", fontsize=11)
    return fig
