"""`Run.learned` and `Run.steer(strengths=...)`: the strengths the steer stage learned, steered through a full
forward of the model (the stage scored them through the decision logits and its outcome cache), on the session's
smoke run; per-latent strengths against the set steering they generalise; bad strengths refused in one line."""

import pytest
import torch

from headsteer.core.errors import HeadsteerError


def _error(call) -> str:
    with pytest.raises(HeadsteerError) as err:
        call()
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "variant, sae", [("global", "trained"), ("per_class.true", "trained"), ("per_class.predicted", "untrained")]
)
def test_learned_strengths_reproduce_the_stage_record_on_test(run, test_split, variant, sae):
    """The chosen point's test usage and accuracy in results.json, again from the images: within one image of
    float rounding (the stage adds each latent's logit push to the reconstruction's logits; here the decision
    network reads the re-decoded embedding)."""
    learned = run.learned(variant, 0.5, sae=sae)
    assert learned.target == 0.5 and learned.variant == variant and learned.sae == sae
    assert learned.alpha.shape == ((192,) if variant == "global" else (10, 192))
    assert (learned.alpha >= -1).all()
    labels = test_split.labels if learned.label_source == "true" else None
    out = run.steer(test_split.images, strengths=learned, labels=labels)
    n = len(test_split.labels)
    assert out.accuracy(test_split.labels) == pytest.approx(learned.test["accuracy"], abs=1.01 / n)
    assert out.usage.mean().item() == pytest.approx(learned.test["head_usage"], abs=1.01 / n)


def test_equal_strengths_on_a_set_are_post_topk_steering_of_that_set(run, test_split):
    """A strength a on each latent of S and 0 elsewhere is the post_topk mode at alpha = a: the code's latents
    of S scaled by 1 + a."""
    S = run.index_sets()["global"]
    alpha = torch.zeros(192)
    alpha[S] = 0.75
    x = test_split.images[:64]
    by_strength = run.steer(x, strengths=alpha)
    by_set = run.steer(x, latents=S, alpha=0.75, mode="post_topk")
    assert torch.equal(by_strength.masks, by_set.masks)
    assert torch.allclose(by_strength.logits, by_set.logits, atol=1e-5)


def test_per_class_strengths_use_each_image_row(run, test_split):
    """Row c of (C, d_sae) strengths steers the images of class c: a table whose only non-zero row is class 3's
    leaves every other class's images exactly unsteered-through-the-SAE (all strengths 0)."""
    x, y = test_split.images[:80], test_split.labels[:80]
    table = torch.zeros(10, 192)
    table[3] = 2.0
    zero = run.steer(x, strengths=torch.zeros(192))
    steered = run.steer(x, strengths=table, labels=y)
    other = y != 3
    assert torch.equal(steered.masks[other], zero.masks[other])
    assert torch.equal(steered.masks[~other], run.steer(x[~other], strengths=table[3]).masks)


BAD = [
    (dict(strengths=torch.zeros(5)), "strengths of shape (5,); pass one per latent, shape (192,) or (10, 192)"),
    (dict(strengths=torch.zeros(192, dtype=torch.long)), "strengths of dtype torch.int64; pass float strengths"),
    (dict(strengths=torch.full((192,), float("nan"))), "strengths hold NaN or infinite values; pass finite strengths"),
    (dict(strengths=torch.full((192,), -2.0)), "strengths hold -2, below -1 (which would turn a code negative)"),
    (dict(strengths=torch.zeros(192), alpha=1.0), "give strengths alone: they replace strategy, latents, alpha"),
    (dict(strengths=torch.zeros(192), strategy="global"), "give strengths alone: they replace strategy, latents"),
]


@pytest.mark.parametrize("kwargs, message", BAD)
def test_bad_strengths_are_one_line(run, test_split, kwargs, message):
    assert _error(lambda: run.steer(test_split.images[:4], **kwargs)).startswith(message)


def test_learned_names_what_it_has(run):
    assert _error(lambda: run.learned("per_class")) == (
        "variant='per_class' is not one of global, per_class.true, per_class.predicted"
    )
    assert _error(lambda: run.learned("global", sae="random")) == "sae='random' is not one of trained, untrained"
    assert repr(run.learned("global", 0.2)).startswith("LearnedStrengths(trained SAE, global, target usage 0.2: ")


def test_learned_strengths_are_found_by_target_and_m_not_by_position(tmp_path):
    """A fit cache entry is looked up by the target usage and latent count results.json names, whatever its
    position in the file; a point the file lacks, or a missing file, is a one-line error."""
    from headsteer.api.strengths import _fitted_alpha
    from headsteer.steer.fit_cache import FitCache

    cache = FitCache(tmp_path, {"any": 1})
    entries = [
        ({"alpha": torch.full((1, 3), float(i))}, {"m": m, "fit": {"target": t}})
        for i, (t, m) in enumerate([(0.5, 4), (0.5, 0), (0.1, 4), (0.1, 0)])
    ]
    cache.save("learned.trained.global", entries)
    path = cache.path("learned.trained.global")
    assert _fitted_alpha(path, {"target": 0.1}, {"m": 4}).tolist() == [[2.0, 2.0, 2.0]]
    assert _fitted_alpha(path, {"target": 0.5}, {"m": 0}).tolist() == [[1.0, 1.0, 1.0]]
    assert _error(lambda: _fitted_alpha(path, {"target": 0.1}, {"m": 16})) == (
        f"{path} holds no fit at target 0.1 with m=16, which results.json names; "
        "`headsteer run CONFIG` redoes the steer stage"
    )
    missing = tmp_path / "absent.checkpoint.safetensors"
    assert _error(lambda: _fitted_alpha(missing, {"target": 0.1}, {"m": 4})).startswith(f"{missing} is missing")
