"""Encrypted models against their plain twins: same maths, same accuracy, clear errors when misused."""

from __future__ import annotations

import numpy as np
import pytest

from tclearn.errors import ContextMismatch, DepthExhausted, HEError, IntegrityError, Overflow, SecretKeyMissing
from tclearn.he import encrypted as enc
from tclearn.he import model as plain
from tclearn.he.client import LocalSupervisorClient
from tclearn.he.context import Ciphertexts, HEContext
from tclearn.he.duties import encrypted_scores, predict, predict_encrypted, train_increment
from tclearn.he.supervisor import Supervisor
from tclearn.vault.store import FsspecStore
from tests.he.conftest import Keys

LR = plain.ModelSpec("logreg", 4)
MLP = plain.ModelSpec("mlp", 4, 3)


def memory_store() -> FsspecStore:
    import uuid

    return FsspecStore(f"memory://he-{uuid.uuid4().hex}")


def test_training_under_ckks_matches_plain_training(keys: Keys, supervisor: Supervisor, data: tuple) -> None:
    x, y = data
    store = memory_store()
    start = plain.init_weights(LR, seed=1)
    parent = enc.store_container(store, enc.encrypt_model(keys.public, LR, start))
    client = LocalSupervisorClient(supervisor, "0xMember")

    child = train_increment(store, keys.public, parent, x, y, client, steps=3, lr=1.0)

    expected = plain.train(LR, start, x, y, steps=3, lr=1.0)
    trained = enc.decrypt_model(keys.secret, enc.load_container(store, child, keys.secret))
    assert np.abs(trained["w"] - expected["w"]).max() < 1e-3
    plain_acc = plain.accuracy(plain.logits(LR, expected, x), y)
    assert plain_acc > 0.8  # the increment learned something
    assert abs(encrypted_scores(store, keys.public, child, x, y, client).accuracy - plain_acc) <= 0.01
    predictions = predict(store, keys.public, child, x, client)
    assert np.allclose(predictions, plain.logits(LR, expected, x), rtol=1e-3, atol=1e-3)
    actions = [e.action for e in supervisor.log(account="0xMember")]
    # the fresh parent needs none; each later step needs one (its input is at level 0), plus the final one
    assert actions.count("refresh") == 3 and actions.count("score") == 1 and actions.count("decrypt") == 1
    assert {e.model for e in supervisor.log()} == {parent, child}


class SpyClient(LocalSupervisorClient):
    """Records, per refresh request, the largest value the supervisor decrypted."""

    def __init__(self, supervisor: Supervisor, account: str) -> None:
        super().__init__(supervisor, account)
        self.seen: list[float] = []

    def refresh(self, message: Ciphertexts) -> Ciphertexts:
        values = [self.supervisor.he.decrypt(v) for v in message.load(self.supervisor.he)]
        self.seen.append(max(float(np.abs(v).max()) for v in values))
        return super().refresh(message)


def test_mlp_training_under_ckks_matches_plain_training(keys: Keys, supervisor: Supervisor, data: tuple) -> None:
    x, y = data[0][:32], data[1][:32]  # a mini-batch: the backward pass costs one rotation per sample
    store = memory_store()
    start = plain.init_weights(MLP, seed=3, scale=0.3)
    parent = enc.store_container(store, enc.encrypt_model(keys.public, MLP, start))
    client = SpyClient(supervisor, "0xMember")

    child = train_increment(store, keys.public, parent, x, y, client, steps=3, lr=1.0)

    expected = plain.train(MLP, start, x, y, steps=3, lr=1.0)
    trained = enc.decrypt_model(keys.secret, enc.load_container(store, child, keys.secret))
    assert max(np.abs(trained[n] - expected[n]).max() for n in MLP.shapes()) < 1e-2
    plain_acc = plain.accuracy(plain.logits(MLP, expected, x), y)
    assert plain_acc > plain.accuracy(plain.logits(MLP, start, x), y) + 0.2  # the increment learned something
    assert abs(encrypted_scores(store, keys.public, child, x, y, client).accuracy - plain_acc) <= 0.01
    # per step: the logits and the residuals (blinded), then the weights (before the next step, at the end)
    actions = [e.action for e in supervisor.log(account="0xMember")]
    assert actions.count("refresh") == 3 * 3 and actions.count("score") == 1
    sizes = [e.values for e in reversed(supervisor.log(account="0xMember")) if e.action == "refresh"]
    assert sizes == [32, 32, MLP.weight_count] * 3
    # the blinded logits and residuals the supervisor decrypted are masks, not the model's (|logit| < 5)
    assert all(seen > 50 for seen, size in zip(client.seen, sizes, strict=True) if size == 32)
    assert np.abs(plain.logits(MLP, expected, x)).max() < 5


@pytest.mark.parametrize("spec", [LR, MLP], ids=["logreg", "mlp"])
def test_inference_matches_plain_on_plain_and_encrypted_data(keys: Keys, data: tuple, spec: plain.ModelSpec) -> None:
    x, y = data
    weights = plain.train(spec, plain.init_weights(spec, seed=2), x, y, steps=20, lr=0.2)
    model = enc.encrypt_model(keys.public, spec, weights)
    expected = plain.logits(spec, weights, x)
    on_plain = keys.secret.decrypt(enc.logits(keys.public, enc.compact(keys.public, model), x))
    on_encrypted = keys.secret.decrypt(enc.logits_encrypted(keys.public, model, enc.encrypt_features(keys.public, x)))
    assert np.allclose(on_plain, expected, rtol=1e-3, atol=1e-3)  # CKKS noise grows with the logits
    assert np.allclose(on_encrypted, expected, rtol=1e-3, atol=1e-3)
    assert plain.accuracy(on_plain, y) == pytest.approx(plain.accuracy(expected, y), abs=0.01)


def test_stored_model_needs_a_refresh_for_encrypted_data(keys: Keys, supervisor: Supervisor, data: tuple) -> None:
    x, _ = data
    store = memory_store()
    weights = plain.init_weights(LR, seed=3)
    stored = enc.store_container(store, enc.compact(keys.public, enc.encrypt_model(keys.public, LR, weights)))
    columns = enc.encrypt_features(keys.public, x)
    with pytest.raises(DepthExhausted, match="refresh"):
        enc.logits_encrypted(keys.public, enc.load_container(store, stored, keys.public), columns)
    client = LocalSupervisorClient(supervisor, "0xMember")
    values = predict_encrypted(store, keys.public, stored, columns, client)
    assert np.abs(values - plain.logits(LR, weights, x)).max() < 1e-3
    assert [e.action for e in supervisor.log()] == ["decrypt", "refresh"]


def test_cold_stored_mlp_is_refreshed_once_per_use(keys: Keys, supervisor: Supervisor, data: tuple) -> None:
    x, _ = data
    store = memory_store()
    weights = plain.init_weights(MLP, seed=4, scale=0.5)
    model = enc.encrypt_model(keys.public, MLP, weights)
    cold = enc.compact(keys.public, model, level=0)
    assert set(cold.levels(keys.public).values()) == {0}
    assert 2.5 * len(cold.to_bytes()) < len(enc.compact(keys.public, model).to_bytes())
    stored = enc.store_container(store, cold)
    values = predict(store, keys.public, stored, x, LocalSupervisorClient(supervisor, "0xMember"))
    # each level dropped costs precision (a weight at level 0 is off by ~2e-4): logits within 0.2%
    assert np.allclose(values, plain.logits(MLP, weights, x), rtol=2e-3, atol=1e-3)
    assert [(e.action, e.values) for e in supervisor.log()] == [("decrypt", len(x)), ("refresh", MLP.weight_count)]
    with pytest.raises(HEError, match="level is 0 to 4"):
        enc.compact(keys.public, model, level=5)


def test_container_is_deterministic_and_compact(keys: Keys) -> None:
    model = enc.encrypt_model(keys.public, MLP, plain.init_weights(MLP))
    data = model.to_bytes()
    assert data == model.to_bytes()
    again = enc.EncryptedModel.from_bytes(data, keys.public)
    assert again.to_bytes() == data and again.spec == MLP
    small = enc.compact(keys.public, model)
    assert len(small.to_bytes()) < len(data)
    assert small.levels(keys.public) == {"w1_0": 3, "w1_1": 3, "w1_2": 3, "w2": 2}
    with pytest.raises(IntegrityError, match="TCHE1"):
        enc.EncryptedModel.from_bytes(b"not a model", keys.public)


def test_public_context_cannot_decrypt(keys: Keys) -> None:
    assert not keys.public.can_decrypt
    vector = keys.public.encrypt([1.0, 2.0])
    with pytest.raises(SecretKeyMissing, match="only the supervisor"):
        keys.public.decrypt(vector)
    with pytest.raises(SecretKeyMissing):
        enc.decrypt_model(keys.public, enc.encrypt_model(keys.public, LR, plain.init_weights(LR)))
    secret_bytes = keys.secret.context.serialize(save_secret_key=True, save_galois_keys=False)
    with pytest.raises(HEError, match="must not hold the secret key"):
        HEContext.from_public(secret_bytes)


def test_ciphertexts_of_another_context_are_refused(
    keys: Keys, other_secret: HEContext, supervisor: Supervisor
) -> None:
    foreign = enc.encrypt_model(other_secret, LR, plain.init_weights(LR))
    with pytest.raises(ContextMismatch, match="encrypted under context"):
        enc.EncryptedModel.from_bytes(foreign.to_bytes(), keys.public)
    with pytest.raises(ContextMismatch, match="were made under context"):
        supervisor.decrypt("0xM", Ciphertexts.of(other_secret, [foreign.vectors["w"]]))
    # a client that lies about the context: the decrypted noise is refused as out of range (the message named
    # this context, so nothing says "another context"), and nothing is logged
    forged = Ciphertexts(keys.secret.hash, (bytes(foreign.vectors["w"].serialize()),))
    with pytest.raises(Overflow, match=r"decrypt request, vector 1 of 1: .* value .* at position 0"):
        supervisor.decrypt("0xM", forged)
    assert supervisor.log() == []


def test_bad_shapes_and_depth_are_clear_errors(keys: Keys, data: tuple) -> None:
    x, y = data
    model = enc.encrypt_model(keys.public, LR, plain.init_weights(LR))
    with pytest.raises(HEError, match="do not match"):
        enc.encrypt_model(keys.public, LR, {"w": np.zeros(3)})
    with pytest.raises(Exception, match="feature matrix"):
        enc.logits(keys.public, model, x[:, :3])
    stepped = enc.gradient_step(keys.public, model, x, y, 0.5)
    with pytest.raises(DepthExhausted, match="0 multiplicative level"):
        enc.gradient_step(keys.public, stepped, x, y, 0.5)
    mlp = enc.encrypt_model(keys.public, MLP, plain.init_weights(MLP))
    with pytest.raises(HEError, match="needs supervisor refreshes"):
        enc.gradient_step(keys.public, mlp, x, y, 0.5)
    with pytest.raises(DepthExhausted, match="'w1_0' has 3 multiplicative level"):
        enc.gradient_step(keys.public, enc.compact(keys.public, mlp), x, y, 0.5, refresh=lambda v: v)
