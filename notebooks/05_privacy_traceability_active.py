# %% [markdown]
# # 5. Privacy budget, watermark and trace, committee ranking
#
# Three things a hospital's data scientist meets once a coalition runs:
#
# 1. **the privacy budget**: each increment trained with DP-SGD declares the epsilon it spends; the chain charges it
#    to its hospital and refuses what would pass the coalition's cap (docs/privacy.md);
# 2. **the watermark and the trace**: the coalition's model carries a mark that proves it is the coalition's; a copy
#    a hospital exports carries that hospital's fingerprint, so a leaked file is traced back to its exporter
#    (docs/traceability.md);
# 3. **the committee's ranking**: the coalition's models, trained at different hospitals, rank a folder of
#    unlabelled images by how much they disagree; the expert annotates the first few and they join the training
#    data (docs/active.md).
#
# Two small coalitions on the embedded chain: one that trains with differential privacy (part 1), one founded with a
# watermark (parts 2 and 3). Everything is written under a temporary folder, removed at the end.

# %%
import shutil
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
work = Path(tempfile.mkdtemp(prefix="tclearn-nb05-"))
print("writing under", work)

# %% [markdown]
# ## The data
#
# A synthetic coalition of three hospitals (notebook 1). Hospital 3 has annotated only its first `LABELLED`
# training images; the other `POOL` wait in a folder of unlabelled images, their true masks set aside: they stand
# for what the expert will draw in part 3.

# %%
LABELLED, POOL = 12, 8
data = work / "data"
synth_coalition(data, hospitals=3, train=LABELLED + POOL, test=4, global_size=8, size=32, seed=0)

own = data / "hospital-3" / "train"
unlabelled, truth = work / "unlabelled", work / "truth"
unlabelled.mkdir()
truth.mkdir()
for image in sorted((own / "images").iterdir())[LABELLED:]:
    image.rename(unlabelled / image.name)
    (own / "masks" / image.name).rename(truth / image.name)
print(len(list((own / "images").iterdir())), "labelled,", len(list(unlabelled.iterdir())), "unlabelled at hospital-3")

# %%
assert len(list(unlabelled.iterdir())) == POOL and len(list((own / "masks").iterdir())) == LABELLED

# %% [markdown]
# # Part 1: the privacy budget
#
# A coalition whose acceptance policy **requires** DP-SGD, with a cap on the epsilon each hospital may spend over
# all its increments. `DemoSettings(dp_epsilon=CAP)` founds it with that cap and trains every increment with DP-SGD,
# the noise multiplier found (`calibrated`) so that an increment spends `CAP` over the number of increments a
# hospital proposes: here `rounds=4` over two hospitals, two increments each, half the cap each.

# %%
CAP = 6.0
private_settings = DemoSettings(
    members=2,
    byzantine=0,
    attack="none",
    variant=Variant.A,
    data=data,
    epochs=1,
    rounds=4,
    dp_epsilon=CAP,
    baselines=False,
)
dp, _ = setup(private_settings, embedded_chain(private_settings.accounts), work / "private")
rules, mechanism = dp.policy.privacy, dp.backend.training.dp
print(f"policy: DP required {rules.required}, delta {rules.delta:g}, accountant {rules.accountant}")
cap_units = dp.client.parameters().epsilon_cap
print(f"each hospital's cap: epsilon {rules.epsilon_cap:g} (on chain, in millionths: {cap_units})")
print(f"DP-SGD: noise multiplier {mechanism.noise_multiplier:.3f}, clipping norm {mechanism.max_grad_norm:g}")

# %%
assert rules.required and rules.epsilon_cap == CAP and cap_units == 6_000_000
assert private_settings.epsilon_per_increment == CAP / 2

# %% [markdown]
# Hospital 1 proposes, then hospital 2, then hospital 1 again. Each increment's metadata declares its mechanism
# (noise, sample rate, steps) and the epsilon it spends; the general recomputes that epsilon from the mechanism,
# and the chain charges it to the proposer when it submits — whatever the vote: a model shared has spent its
# privacy.

# %%
from tclearn.coalition.blobs import get_record  # noqa: E402
from tclearn.ledger.values import epsilon_units  # noqa: E402
from tclearn.records import CandidateMetadata  # noqa: E402

h1, h2 = dp.hospitals
declarations = {}
for hospital in (h1, h2, h1):
    row = run_round(dp, hospital)
    declared = get_record(dp, dp.client.get_model(row.id).metadata_hex, CandidateMetadata).privacy
    declarations[row.id] = declared
    print(
        f"model {row.id} by {row.proposer}: {row.state:<9} declares epsilon {declared.epsilon:.3f} at delta "
        f"{declared.delta:g} (noise {declared.noise_multiplier:.3f}, sample rate {declared.sample_rate:.2f}, "
        f"{declared.steps} steps); charged on chain {dp.client.privacy_charge(row.id) / 1e6:.6f}"
    )

# %%
for model_id, declared in declarations.items():  # each spends at most its share, and is charged what it declares
    assert declared.mechanism == "dp-sgd" and declared.epsilon <= CAP / 2
    assert dp.client.privacy_charge(model_id) == epsilon_units(declared.epsilon)

# %% [markdown]
# ### What is left
#
# Anyone can rebuild every budget from the chain's logs alone: `budgets(history)` sums each member's
# `PrivacySpent` charges (what `tclearn ledger show`, the member API's `GET /privacy` and the auditor's dashboard
# show). The contract's own counter says the same.

# %%
from tclearn.audit.privacy import budgets  # noqa: E402
from tclearn.ledger.history import rebuild  # noqa: E402

table = budgets(rebuild(dp.client.events()))
print(f"{'hospital':<12}{'spent':>10}{'cap':>8}{'left':>10}")
for budget in table:
    view = budget.view()
    print(f"{view['name']:<12}{view['spent']:>10.6f}{view['cap']:>8g}{view['left']:>10.6f}")

# %%
left = {b.name: b.left_units for b in table}
assert [b.spent_units for b in table] == [dp.client.privacy_spent(h.address) for h in dp.hospitals]
assert left["hospital-1"] < dp.client.privacy_charge(1) <= left["hospital-2"]  # hospital 1 cannot afford another

# %% [markdown]
# ### A proposal over budget
#
# Hospital 1 proposes once more. Its member checks the budget on chain *before the first training step*: the
# increment would spend more than what is left, so nothing is trained and nothing submitted
# (`PrivacyBudgetExceeded`; HTTP 409 in the member API). The contract would refuse the charge too (`OverBudget`).

# %%
from tclearn.coalition.member import propose  # noqa: E402
from tclearn.errors import PrivacyBudgetExceeded  # noqa: E402

models_before = dp.client.model_count()
try:
    propose(dp, h1)
    refused = None
except PrivacyBudgetExceeded as error:
    refused = error
    print("refused:", error)

# %%
assert refused is not None and "hospital-1's privacy budget is spent" in str(refused)
assert dp.client.model_count() == models_before  # nothing submitted, nothing charged

# %% [markdown]
# # Part 2: the watermark and the trace
#
# A second coalition, founded with a **watermark** (`watermark=True`): founding draws a secret key, stamps the
# genesis with it, stores the key in the vault (sealed for the founders: variant B) and commits to its sha256 in
# the acceptance policy, whose hash is on chain. Every increment is trained with the mark loss, and the general
# refuses a candidate that lost the mark. Hospitals 1 and 2 each propose once.

# %%
settings = DemoSettings(
    members=3,
    byzantine=0,
    attack="none",
    variant=Variant.B,
    data=data,
    epochs=8,
    rounds=2,
    watermark=True,
    baselines=False,
)
co, _ = setup(settings, embedded_chain(settings.accounts), work / "marked")
rows = [run_round(co, hospital) for hospital in co.hospitals[:2]]
for row in rows:
    print(f"model {row.id} by {row.proposer}: {row.state}, Dice on G {row.score_global:.3f}")

# %%
assert [row.state for row in rows] == ["committed", "committed"] and co.client.head() == rows[-1].id

# %% [markdown]
# ### Is this model the coalition's?
#
# `tclearn watermark verify MODEL` reads the policy the chain declares, the key from the vault (checked against the
# commitment), and measures the model: how many of the 128 bits read wrong, and the p-value — the chance that a
# model which never saw the key reads this well. Here the same library call on the head, as hospital 3 opens it,
# and on a network of the same architecture that never saw the key (freshly initialised): about half its bits read
# wrong, as chance has it.

# %%
from tclearn.coalition.backend import tensors  # noqa: E402
from tclearn.coalition.declared import declared_policy  # noqa: E402
from tclearn.coalition.watermark import verify  # noqa: E402
from tclearn.learning.models import build_model  # noqa: E402

backend = tensors(co.backend, "the notebook")
h3 = co.hospitals[2]
head = backend.open(h3, co.client.get_model(co.client.head(), with_uri=False).model_hash.hex())
stranger = build_model(backend.config).state_dict()
policy, _ = declared_policy(co.client, co.store)
readings = {
    name: verify(co.store, policy, weights, h3.address, h3.key)
    for name, weights in (("the head", head), ("never marked", stranger))
}
for name, found in readings.items():
    r = found.reading
    print(f"{name}: {r.errors} of {r.bits} bits wrong (p {r.p_value:.2g}, max_ber {found.max_ber:g}): {found.verdict}")

# %%
assert readings["the head"].carries and readings["the head"].reading.errors == 0
assert not readings["never marked"].carries and readings["never marked"].reading.errors > 30

# %% [markdown]
# ### An export, leaked, traced
#
# Hospital 3 exports the head for its clinical system: `export_model` writes a **fingerprint** of its own (64 bits,
# a key derived from hospital 3's account key) into a copy by self-distillation — the copy keeps the model's
# outputs — seals the fingerprint key in the vault for the coalition's tracers (here the members: the coalition has
# no auditor) and records the export on chain, signed by hospital 3. `write_export` writes the file.

# %%
from tclearn.coalition.exports import export_model, write_export  # noqa: E402

export = export_model(co, h3, co.client.head())
leaked = write_export(work / "clinic" / "model.safetensors", export, {"site": h3.name})
print(f"export {export.id} of model {export.model_id} by {h3.name}, fingerprint commitment {export.fingerprint[:16]}…")
for side in export.scores:
    print(f"  Dice on {side.data} ({side.samples} images): committed {side.committed:.3f}, export {side.exported:.3f}")

# %%
assert [(e.id, e.member) for e in co.client.exports()] == [(export.id, h3.address)]
assert all(abs(side.exported - side.committed) < 0.02 for side in export.scores)  # the same function

# %% [markdown]
# The file turns up where it should not, and rounded to int8 on the way. Hospital 1, a tracer, runs
# `tclearn trace` (the library's `trace`): every export on chain is tried, its key unsealed and checked against
# the commitment, the suspect read against it. With `n` exports tried, the threshold keeps the chance of accusing
# anyone on a model that carries no fingerprint below 10⁻⁶. The head itself, never exported, accuses nobody.

# %%
from tclearn.coalition.trace import trace  # noqa: E402
from tclearn.learning.modelfile import read_weights  # noqa: E402
from tclearn.learning.tampering import int8_round_trip  # noqa: E402

tracer = co.hospitals[0]
names = {h.address: h.name for h in co.hospitals}
suspects = {"the leaked file, int8": int8_round_trip(read_weights(leaked)), "the head (never exported)": head}
traces = {
    name: trace(co.client, co.store, tracer.address, tracer.key, weights, co.watermark)
    for name, weights in suspects.items()
}
for name, found in traces.items():
    (reading,) = found.readings
    accused = [names[r.export.member] for r in found.accused] or "nobody"
    print(
        f"{name}: fingerprint {reading.reading.errors} of {reading.reading.bits} bits wrong (threshold "
        f"{reading.threshold}, p {reading.p_value:.2g}); watermark {found.watermark.errors} of "
        f"{found.watermark.bits} wrong; accused: {accused}; false-accusation bound {found.bound:.1e}"
    )

# %%
assert [r.export.member for r in traces["the leaked file, int8"].accused] == [h3.address]
assert traces["the head (never exported)"].accused == ()
assert all(found.watermark.errors == 0 for found in traces.values())  # both are the coalition's model

# %% [markdown]
# # Part 3: the committee ranks hospital 3's unlabelled images
#
# The committee is the last committed models of *different* hospitals, read from the chain and verified from the
# vault (`committee`): here model 2 (hospital 2) and model 1 (hospital 1). `rank` scores each unlabelled image by
# how much they disagree — here by vote entropy (`Measure.ENTROPY`, the measure that picked best in
# docs/active.md's benchmark; the CLI's default is pairwise Dice) — orders the folder with a diversity term, marks
# the first `budget` as chosen, and writes `ranking.json` and a thumbnail per image: the image in grey, the
# committee's mean foreground probability in red. Outside the notebook: `tclearn active rank --unlabelled DIR
# --budget 3 --measure entropy`. Two short increments make young models (the head's Dice on G is about 0.2),
# which disagree over much of every image; a coalition further along separates the scores more. Below each
# thumbnail, the truth set aside at the start: the findings are the small blobs, not the bright lines.

# %%
from tclearn.coalition.committee import committee  # noqa: E402
from tclearn.learning.choices import Measure  # noqa: E402
from tclearn.learning.ranking import rank  # noqa: E402

BUDGET = 3
seated = committee(co, h3, 3)
ranking = rank(seated, unlabelled, BUDGET, work / "ranking", measure=Measure.ENTROPY)
print("committee:", [(m.model_id, names[m.proposer]) for m in seated])
for row in ranking["ranked"]:
    print(f"{row['rank']:>3}  {row['score']:.4f}  {row['name']}{'  <- chosen' if row['chosen'] else ''}")

# %%
assert [m.model_id for m in seated] == [2, 1]
assert sorted(row["name"] for row in ranking["ranked"]) == sorted(p.name for p in unlabelled.iterdir())
assert [row["chosen"] for row in ranking["ranked"]] == [True] * BUDGET + [False] * (POOL - BUDGET)

# %%
from PIL import Image  # noqa: E402

fig, axes = plt.subplots(2, POOL, figsize=(1.9 * POOL, 4.4))
for top, bottom, row in zip(axes[0], axes[1], ranking["ranked"], strict=True):
    with Image.open(work / "ranking" / row["thumbnail"]) as picture:
        top.imshow(picture)
    with Image.open(truth / row["name"]) as mask:
        bottom.imshow(mask, cmap="gray")
    top.set_title(f"#{row['rank']} {row['score']:.3f}" + (" chosen" if row["chosen"] else ""), fontsize=9)
    top.axis("off")
    bottom.axis("off")
axes[0][0].text(-0.15, 0.5, "ranked", rotation=90, va="center", ha="right", transform=axes[0][0].transAxes)
axes[1][0].text(-0.15, 0.5, "truth", rotation=90, va="center", ha="right", transform=axes[1][0].transAxes)
fig.suptitle("The committee's ranking (grey: the image; red: the committee's mean probability of a finding)")
plt.show()

# %% [markdown]
# ### The loop closes
#
# The expert draws a mask for each chosen image (here: the synthetic truth set aside at the start). `add` checks
# every chosen image is unchanged since the ranking (its sha256), that each has a mask of its shape and that no name
# is taken, then copies them into hospital 3's training folder and lists their sha256 in its `committee.json`;
# `committee_chosen` counts them, and the next increment's metadata records that count on the lineage. Outside the
# notebook: `tclearn active add ranking/ranking.json --masks MASKS --data TRAIN`.

# %%
from tclearn.learning.active import committee_chosen  # noqa: E402
from tclearn.learning.ranking import add  # noqa: E402

added = add(work / "ranking" / "ranking.json", truth, own)
print("added to hospital-3's training folder:", added)
print("committee-chosen images there:", committee_chosen(own), "of", len(list((own / "images").iterdir())))

# %%
assert added == [row["name"] for row in ranking["ranked"] if row["chosen"]]
assert committee_chosen(own) == BUDGET and len(list((own / "masks").iterdir())) == LABELLED + BUDGET

# %% [markdown]
# Everything this notebook wrote is under `work`; remove it.

# %%
shutil.rmtree(work)
