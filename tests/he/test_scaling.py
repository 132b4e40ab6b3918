"""Variant C on tables with real properties: raw scales, outliers, correlated columns, 1:9 classes, skewed sites.

The agreed scaling (computed from the sites' encrypted sums), the step size tied to the data and the weight
bounds the supervisor projects onto keep encrypted training where the polynomial sigmoid holds, so that it
matches its plain twin; an overflow says overflow."""

from __future__ import annotations

import numpy as np
import pytest

from tclearn.errors import DataError, Overflow, SupervisorRefused
from tclearn.he import encrypted as enc
from tclearn.he import model as plain
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.context import Ciphertexts
from tclearn.he.duties import agree_scaling, range_problem, refresh, train_model
from tclearn.he.scaling import CLIP, Scaling, combine, pooled_scaling
from tclearn.he.supervisor import Supervisor
from tests.he.conftest import Keys


def clinical_sites(
    features: int, rows: int = 160, sites: int = 3, prevalence: float = 0.1, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw measurements in their own units (0.01 .. 5000), driven by 3 latent factors (correlated columns),
    2 % outlier rows (x10 entry errors), about 1 positive in 10, each site its own case mix."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(3, features))
    unit = np.exp(rng.uniform(np.log(0.01), np.log(5000), features))
    effect = np.array([1.5, -1.0, 0.8])
    tables = []
    for site in range(sites):
        y = (rng.random(rows) < prevalence * (0.5 + site * 0.5)).astype(np.float64)
        y[:2] = 1.0  # both classes at every site
        latent = rng.normal(size=(rows, 3)) + rng.normal(0, 0.7, 3) + np.outer(y, effect)
        x = unit * (3.0 + latent @ loadings * 0.3 + rng.normal(0, 0.2, (rows, features)))
        x[rng.random(rows) < 0.02] *= 10.0
        tables.append((x, y))
    return tables


def test_the_scaling_round_decrypts_only_sums_and_matches_the_clear_computation(
    keys: Keys, supervisor: Supervisor
) -> None:
    sites = clinical_sites(12)
    columns = [f"m{j}" for j in range(12)]
    client = LocalSupervisorClient(supervisor, "0xFounder")

    agreed = agree_scaling(keys.public, columns, [x for x, _ in sites], client)

    clear = pooled_scaling(columns, [x for x, _ in sites])
    assert agreed.columns == tuple(columns) and agreed.rows == 480 and agreed.sites == 3
    for got, want in ((agreed.centre, clear.centre), (agreed.scale, clear.scale), (agreed.low, clear.low)):
        assert np.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert agreed.whiten is not None and np.allclose(agreed.whiten, clear.whiten, atol=1e-3)
    assert [e.action for e in supervisor.log()] == ["aggregate"] * 3  # magnitudes, bounds, moments; nothing else

    raw = np.vstack([x for x, _ in sites])
    scaled = agreed.apply(raw)
    assert np.abs(scaled).max() <= CLIP
    standardised = pooled_scaling(columns, [x for x, _ in sites], whiten=False).apply(raw)
    assert np.linalg.eigvalsh(np.cov(standardised.T))[-1] > 3.0  # correlated columns ...
    assert np.linalg.eigvalsh(np.cov(scaled.T))[-1] < 1.2  # ... decorrelated: no step overshoots along them
    assert Scaling.from_json(agreed.to_json()) == agreed


def test_one_outlier_does_not_set_the_scale() -> None:
    rng = np.random.default_rng(1)
    tables = [rng.normal(100.0, 10.0, size=(200, 2)) for _ in range(3)]
    tables[1][0, 0] = 1e6  # a data-entry error at one site
    robust = pooled_scaling(["a", "b"], tables, whiten=False)
    naive = pooled_scaling(["a", "b"], tables, robust=False, whiten=False)
    assert robust.scale[0] == pytest.approx(10.0, rel=0.15)
    assert naive.scale[0] > 1000.0


def test_a_constant_column_is_refused_whatever_the_noise_of_the_encrypted_sums() -> None:
    """CKKS sums carry ~1e-7 of noise: a constant column's clip bounds then differ by noise, which must not pass
    for a spread (it once did, about 1 run in 40); a rare flag (1 % quantile == 99 % quantile) is still kept."""
    rng = np.random.default_rng(3)
    columns = ["age", "sodium", "flag"]
    noisy = lambda parts, _: np.sum(parts, axis=0) + rng.normal(scale=3e-7, size=np.shape(parts[0]))  # noqa: E731
    for _ in range(60):
        tables = [np.column_stack([rng.normal(60, 9, 96), np.full(96, 7.0), np.zeros(96)]) for _ in range(3)]
        with pytest.raises(DataError, match=r"'sodium', 'flag' hold the same value"):
            combine(columns, tables, noisy)
        tables[1][:1, 1:] = 8.0, 1.0  # one row of one site differs: a rare value, not a constant
        assert combine(columns, tables, noisy).scale[2] > 0


def test_a_column_constant_at_every_site_is_named_and_one_site_alone_is_refused(
    keys: Keys, supervisor: Supervisor
) -> None:
    x = clinical_sites(3)[0][0]
    flat = [np.column_stack([x, np.full(len(x), 7.0)]) for _ in range(2)]
    with pytest.raises(DataError, match=r"'sodium' hold the same value in every row of every site"):
        pooled_scaling(["a", "b", "c", "sodium"], flat)
    varied = [flat[0], np.column_stack([x, np.linspace(6, 8, len(x))])]
    assert pooled_scaling(["a", "b", "c", "sodium"], varied).scale[3] > 0  # constant at one site only: fine

    client = LocalSupervisorClient(supervisor, "0xFounder")
    with pytest.raises(DataError, match="at least 2 sites"):
        agree_scaling(keys.public, ["a", "b", "c"], [x], client)
    one = Ciphertexts.of(keys.public, [keys.public.encrypt(np.ones(3))])
    with pytest.raises(SupervisorRefused, match="at least 2 sites' parts"):
        supervisor.aggregate("0xFounder", [one])
    two = Ciphertexts.of(keys.public, [keys.public.encrypt(np.ones(4))])
    with pytest.raises(SupervisorRefused, match="differ in shape"):
        supervisor.aggregate("0xFounder", [one, two])
    assert supervisor.log() == []


@pytest.mark.parametrize("features", [30, 64])
def test_encrypted_training_on_raw_correlated_imbalanced_tables_matches_plain(
    keys: Keys, supervisor: Supervisor, features: int
) -> None:
    sites = clinical_sites(features, seed=features)
    scaling = pooled_scaling([f"m{j}" for j in range(features)], [x for x, _ in sites])
    spec = plain.ModelSpec("logreg", features, scaling=scaling)
    start = plain.init_weights(spec, seed=1)
    client = LocalSupervisorClient(supervisor, "0xMember")
    model = enc.compact(keys.public, enc.encrypt_model(keys.public, spec, start))
    expected = start
    for x, y in sites:  # an increment at every site, in turn
        model = enc.compact(keys.public, train_model(keys.public, model, x, y, client, steps=3, lr=1.0))
        expected = plain.train(spec, expected, x, y, steps=3, lr=1.0)

    trained = enc.decrypt_model(keys.secret, model)
    assert np.abs(trained["w"] - expected["w"]).max() < 1e-3
    x = np.vstack([x for x, _ in sites])
    y = np.concatenate([y for _, y in sites])
    assert 0.05 < y.mean() < 0.2  # about 1:9
    encrypted_accuracy = plain.accuracy(plain.logits(spec, trained, x), y)
    plain_accuracy = plain.accuracy(plain.logits(spec, expected, x), y)
    assert encrypted_accuracy == pytest.approx(plain_accuracy, abs=0.01)
    assert plain_accuracy > plain.accuracy(plain.logits(spec, start, x), y) + 0.05  # the increments learned
    assert range_problem(keys.public, model, client, "m") is None


def test_mlp_training_on_a_raw_correlated_table_matches_plain(keys: Keys, supervisor: Supervisor) -> None:
    x, y = clinical_sites(6, rows=48, sites=1, prevalence=0.3, seed=5)[0]
    spec = plain.ModelSpec("mlp", 6, 2, scaling=pooled_scaling([f"m{j}" for j in range(6)], [x[:24], x[24:]]))
    start = plain.init_weights(spec, seed=2, scale=0.4)
    model = enc.encrypt_model(keys.public, spec, start)
    trained = train_model(keys.public, model, x, y, LocalSupervisorClient(supervisor, "0xM"), steps=2, lr=1.0)
    expected = plain.train(spec, start, x, y, steps=2, lr=1.0)
    decrypted = enc.decrypt_model(keys.secret, trained)
    assert max(np.abs(decrypted[n] - expected[n]).max() for n in expected) < 2e-3
    assert plain.accuracy(plain.logits(spec, decrypted, x), y) == pytest.approx(
        plain.accuracy(plain.logits(spec, expected, x), y), abs=0.03
    )
    bounds = plain.weight_bounds(spec)
    assert all(np.linalg.norm(decrypted[n][:-1]) <= bounds[n].norm + 1e-3 for n in decrypted)


def test_the_supervisor_projects_refreshed_weights_and_measures_them(keys: Keys, supervisor: Supervisor) -> None:
    spec = plain.ModelSpec("logreg", 3)
    client = LocalSupervisorClient(supervisor, "0xM")
    wild = enc.encrypt_model(keys.public, spec, {"w": np.array([3.0, 4.0, 0.0, -9.0])})
    problem = range_problem(keys.public, wild, client, "m")
    assert problem is not None and "norm 5" in problem and "|bias| 9" in problem
    tamed = enc.decrypt_model(keys.secret, refresh(keys.public, wild, client, "m"))
    assert np.allclose(tamed["w"], [1.2, 1.6, 0.0, -4.0], atol=1e-4)  # norm 2, bias clipped to 4
    assert sorted(e.action for e in supervisor.log()) == ["measure", "refresh"]


def test_an_overflow_says_overflow_where_and_what_fixes_it(keys: Keys, supervisor: Supervisor) -> None:
    x, y = clinical_sites(4, rows=32, sites=1, seed=3)[0]  # raw values up to thousands, no scaling
    spec = plain.ModelSpec("mlp", 4, 2)
    model = enc.encrypt_model(keys.public, spec, plain.init_weights(spec, seed=1))
    with pytest.raises(Overflow) as caught:
        train_model(keys.public, model, x, y, LocalSupervisorClient(supervisor, "0xM"), steps=2, lr=1.0)
    message = str(caught.value)
    assert "encrypted training step 1 of 2" in message and "overflowed" in message
    assert "refresh request, vector 1 of 1" in message and "beyond the +-65536" in message
    assert "scaled features" in message and "context" not in message.split("what fixes it")[0]
