# %% [markdown]
# # 1. A coalition from scratch
#
# Three hospitals train one segmentation model together without pooling their images. Every step of the
# protocol leaves a trace on a blockchain (here the *embedded* chain: an in-process Ethereum test chain, nothing
# to install or start) and every model in a vault (here a folder).
#
# The steps:
#
# 1. **found**: the hospitals' data are checked, keys made, the untrained *genesis* model stored, the coalition's
#    contract deployed with its members and acceptance policy;
# 2. **train**: one hospital trains the current head on its own images: an *increment*, submitted as a candidate;
# 3. **vote**: a randomly drawn *general* checks the candidate's integrity and opens it; every other member scores
#    it on the shared global test set G and on its own local test set L, and votes;
# 4. **commit**: two thirds of the eligible validators approve, the candidate becomes the new head;
# 5. **compare**: the head against each hospital alone and against all data pooled, with the same training budget.
#
# One hospital is *Byzantine*: it flips the sign of its update. Watch what happens to its candidate.
#
# Everything is written under a temporary folder; the run takes well under a minute on two CPU cores.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from tclearn.coalition.rounds import run_round
from tclearn.learning.synth import synth_coalition
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, setup
from tclearn.types import Variant

torch.manual_seed(0)
torch.set_num_threads(2)
work = Path(tempfile.mkdtemp(prefix="tclearn-nb01-"))
print("writing under", work)

# %% [markdown]
# ## The data
#
# `synth_coalition` writes a small synthetic coalition in the layout you would bring your own data in
# (notebook 4): `hospital-N/train`, `hospital-N/test` (its local test set L) and `global` (the test set G every
# member holds). Each hospital sees a different part of the case mix, so none of them does well alone on G.

# %%
data = work / "data"
synth_coalition(data, hospitals=3, train=16, test=8, global_size=16, size=48, seed=0)
sorted(p.name for p in data.iterdir())

# %%
assert {"hospital-1", "hospital-2", "hospital-3", "global"} <= {p.name for p in data.iterdir()}

# %% [markdown]
# ## Found
#
# `DemoSettings` says who takes part and how they train; `setup` checks every hospital's folder, makes the keys,
# founds the coalition on the chain and returns it as its hospitals see it. Variant B: models are stored
# envelope-encrypted for the members, so the vault's operator cannot read them.

# %%
settings = DemoSettings(
    members=3, byzantine=1, attack="sign_flip", variant=Variant.B, data=data, epochs=3, rounds=3, cases=16
)
chain = embedded_chain(settings.accounts)
co, reference = setup(settings, chain, work / "run")
[(h.name, h.address, "byzantine" if h.byzantine else "honest") for h in co.hospitals]

# %%
assert co.client.head() == 0  # only the genesis model so far
assert [h.byzantine for h in co.hospitals] == [False, False, True]

# %% [markdown]
# ## Train, vote, commit
#
# `run_round` drives one round: the proposer trains an increment from the head and submits it; the general
# opens it (or refuses it for integrity); the validators vote; the contract commits or rejects. Each hospital
# proposes once.

# %%
rows = []
for hospital in co.hospitals:
    row = run_round(co, hospital)
    rows.append(row)
    print(
        f"candidate {row.id} by {row.proposer:<11} general {row.general:<11} "
        f"votes +{row.approvals}/-{row.rejections}  Dice on G "
        f"{'-' if row.score_global is None else f'{row.score_global:.3f}'}  -> {row.state}"
    )

# %%
states = {row.proposer: row.state for row in rows}
assert states["hospital-1"] == states["hospital-2"] == "committed"
assert states["hospital-3"] == "rejected"  # the sign-flipped update never becomes the head
assert co.client.head() == rows[1].id

# %% [markdown]
# What the chain holds about a committed model: its parent, proposer, the hash of its (encrypted) blob in the
# vault, and its state. The weights themselves never touch the chain.

# %%
head = co.client.get_model(co.client.head(), with_uri=False)
print(f"model {head.id}: parent {head.parent_id}, proposer {head.proposer}, {head.state.name.lower()}")
print(f"  blob sha256 {head.model_hash.hex()}, approvals {head.approvals} of {head.eligible} eligible")

# %%
assert head.parent_id == rows[0].id and head.proposer == co.hospitals[1].address

# %% [markdown]
# ## Compare
#
# The coalition's head against each hospital training alone and against a model trained on all data pooled
# (what no hospital may do), each with the same number of optimisation steps. Scores are Dice on G and on each
# hospital's L. A run this small is far from converged (the head has had two short increments): it shows the
# mechanics, not the final quality; docs/coalition.md has the figures of the full `tclearn demo`.

# %%
table = reference.score_table(co, rounds=len(rows), trainers=1)
sets = list(table["coalition"])
print(f"{'model':<14}" + "".join(f"{s:>12}" for s in sets))
for name, scores in table.items():
    print(f"{name:<14}" + "".join(f"{scores[s]:>12.3f}" for s in sets))

# %%
assert {"coalition", "centralized", "hospital-1", "hospital-2"} <= set(table)
assert all(0.0 <= score <= 1.0 for scores in table.values() for score in scores.values())

# %%
fig, ax = plt.subplots(figsize=(7, 3))
width = 0.8 / len(table)
for i, (name, scores) in enumerate(table.items()):
    ax.bar([j + i * width for j in range(len(sets))], [scores[s] for s in sets], width, label=name)
ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sets))], ["G" if s == "G" else f"L of {s}" for s in sets])
ax.set_ylabel("Dice")
ax.set_title("Each model on G and on every hospital's L")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## See it
#
# A model is trusted once it is *seen*: the head's foreground probability on the image of G with the largest
# finding, beside the truth. A member opens the head from the vault with its own key (variant B decrypts it for
# members only); `evaluate.probabilities` turns the network's logits into probabilities.

# %%
from tclearn.coalition.backend import tensors  # noqa: E402
from tclearn.learning.evaluate import probabilities  # noqa: E402

backend = tensors(co.backend, "the notebook")
model = backend.network(backend.open(co.hospitals[0], head.model_hash.hex())).eval()
cases = co.global_test.dataset()
index = max(range(len(cases)), key=lambda i: float(cases[i][1].sum()))
image, truth = cases[index]
with torch.no_grad():
    probability = probabilities(model(image.unsqueeze(0)))[0]
foreground = probability[0] if probability.shape[0] == 1 else 1.0 - probability[0]

fig, axes = plt.subplots(1, 3, figsize=(9, 3))
panels = ((image[0], "image (G)", "gray"), (truth[0], "truth", "gray"), (foreground, "head: P(finding)", "magma"))
for ax, (picture, title, cmap) in zip(axes, panels, strict=True):
    ax.imshow(picture, cmap=cmap, vmin=0, vmax=1)  # the PNGs read in [0, 1], as masks and probabilities do
    ax.set_title(title)
    ax.axis("off")
plt.show()

# %%
assert foreground.shape == truth[0].shape and 0.0 <= float(foreground.min()) <= float(foreground.max()) <= 1.0
assert truth.sum() > 0

# %% [markdown]
# Everything this notebook wrote is under `work`; remove it.

# %%
import shutil  # noqa: E402

shutil.rmtree(work)
