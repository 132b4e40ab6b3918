# %% [markdown]
# # 3. Variant C: an encrypted model and its supervisor
#
# In variant C the hospitals do not trust each other with the model. A **supervisor** makes a CKKS key pair
# (homomorphic encryption, TenSEAL) and keeps the secret key; every hospital holds only the *public* context.
# The model — here a logistic regression on feature tables — is encrypted from the genesis on: hospitals train
# it, validators score it, all on ciphertexts. The supervisor decrypts only what it is asked to (a score, a
# norm, a refresh of a tired ciphertext) and logs each request against the account that signed it.
#
# This notebook runs three rounds (hospital-3 is Byzantine: it flips the sign of its encrypted update) and then
# looks at the run from each party's seat: the hospital, the vault, the chain, the supervisor.

# %%
import tempfile
from collections import Counter
from pathlib import Path

from tclearn.coalition.rounds import run_round
from tclearn.learning.tabular import synth_tabular
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant

work = Path(tempfile.mkdtemp(prefix="tclearn-nb03-"))
synth_tabular(work / "data", hospitals=3, train=96, test=48, global_size=144, features=6, seed=0)
sorted(p.name for p in (work / "data").iterdir())

# %% [markdown]
# ## Found and run
#
# `setup` founds the coalition: the supervisor makes its keys and publishes the public context in the vault, its
# hash goes on chain as the supervisor's key, and a *scaling round* fixes how every hospital whitens its features
# (the supervisor sees only sums over all hospitals). `reference` stands in for the supervisor's operator.

# %%
settings = DemoSettings(members=3, byzantine=1, attack="sign_flip", variant=Variant.C, data=work / "data")
co, reference = setup(settings, embedded_chain(settings.accounts), work / "run")
rows = [run_round(co, hospital) for hospital in co.hospitals]
for row in rows:
    print(f"candidate {row.id} by {row.proposer}: +{row.approvals}/-{row.rejections} -> {row.state}")

# %%
assert [row.state for row in rows] == ["committed", "committed", "rejected"]
assert co.client.head() == rows[1].id

# %% [markdown]
# ## What a hospital sees
#
# Its own rows (they never leave it), the public context and the encrypted model. It can compute with the model —
# train, predict, score — but it cannot read a single weight: decryption needs the secret key.

# %%
from tclearn.errors import SecretKeyMissing  # noqa: E402

hospital = co.hospitals[0]
context = co.backend.context
head_hash = co.client.get_model(co.client.head(), with_uri=False).model_hash.hex()
model = co.backend.open(hospital, head_hash)
print("the hospital's context can decrypt:", context.can_decrypt)
print("the head:", {name: type(vector).__name__ for name, vector in model.vectors.items()})
try:
    context.decrypt(model.vectors["w"])
except SecretKeyMissing as exc:
    print("decrypt ->", type(exc).__name__ + ":", exc)

# %%
assert not context.can_decrypt
assert context.hash == reference.supervisor.context_hash  # the context the supervisor published, nothing more

# %% [markdown]
# ## What the vault (and its operator) sees
#
# Containers of ciphertexts, each under its sha256. A model of a handful of weights is tens of kilobytes of CKKS
# ciphertext; its header names the model's shape and the context, not a single value.

# %%
blob = co.store.get(head_hash)
print(f"head model: {len(blob):,} bytes for {model.spec.weight_count} weights; context {model.context[:16]}...")

# %%
assert len(blob) > 1000 * model.spec.weight_count

# %% [markdown]
# ## What the chain sees
#
# Hashes, the members' accounts and roles, the supervisor's key (the hash of its public context) and each
# validator's scores: the accuracy it got from the supervisor on G and on its L.

# %%
from tclearn.ledger.history import rebuild  # noqa: E402

history = rebuild(co.client.events())
names = {address: member.name for address, member in history.members.items()}
supervisor = next(m for m in history.members.values() if "supervisor" in m.roles.names())
print(f"supervisor {supervisor.address}, its key on chain: 0x{supervisor.encryption_key.hex()}")
for candidate_id in (rows[0].id, rows[1].id):
    for vote in history.candidates[candidate_id].votes:
        print(
            f"model {candidate_id}: {names[vote.validator]} approve={vote.approve} "
            f"accuracy G {vote.score_global:.3f} L {vote.score_local:.3f}"
        )

# %%
assert supervisor.address == reference.account.address
assert supervisor.encryption_key.hex() == reference.supervisor.context_hash  # the public context's hash
assert all(history.candidates[row.id].votes for row in rows[:2])

# %% [markdown]
# ## What the supervisor sees
#
# Every request, logged against the account that signed it: `score` (a validator's margins for one class of a test
# set, answered with an accuracy and a count), `refresh` (a training step's weights, decrypted and re-encrypted to
# restore their depth, projected into the declared bounds), `measure` (a general's check of a candidate's norms),
# and at founding three `aggregate` sums of the scaling round. It never sees a hospital's rows.

# %%
log = reference.log()
print(Counter(entry["action"] for entry in log))
by_account = Counter((names.get(entry["account"], entry["account"]), entry["action"]) for entry in log)
for (who, action), count in sorted(by_account.items()):
    print(f"{who:<12} {action:<10} {count}")

# %%
members = {h.address for h in co.hospitals}
assert {e["action"] for e in log if e["account"] in members} <= {"score", "refresh", "measure"}
assert not any(e["action"] == "decrypt" for e in log)  # so far nobody has had a model decrypted

# %% [markdown]
# ## The end of the run
#
# To compare the coalition with each hospital alone, the supervisor itself decrypts the head — one `decrypt`
# request, in its own name, in the same log.

# %%
table = reference.score_table(co, rounds=2, trainers=1)
for name, scores in table.items():
    print(f"{name:<12}" + "".join(f"  {s} {v:.3f}" for s, v in scores.items()))
decrypts = [(e["account"], e["model"]) for e in reference.log() if e["action"] == "decrypt"]
print("decrypt requests:", decrypts)

# %%
assert decrypts == [(reference.account.address, head_hash)]
assert set(table) >= {"coalition", "centralized"}

# %% [markdown]
# Everything this notebook wrote is under `work`; remove it.

# %%
import shutil  # noqa: E402

shutil.rmtree(work)
