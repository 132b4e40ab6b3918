# %% [markdown]
# # 2. An auditor's walk through a finished run
#
# An auditor (a regulator, an ethics board, any member) needs only two things: **the chain's logs** and **read
# access to the vault**. From those alone it rebuilds the whole history — members, candidates, generals, votes —
# and checks that every blob the chain vouches for is in the vault with the right hash and that every commit
# followed the protocol. Nothing is decrypted: in variant B the model blobs are ciphertext and the auditor only
# re-hashes them.
#
# First we need a finished run: three hospitals, four rounds, one of them Byzantine (it flips the sign of its update).
# Outside a notebook the auditor would instead run `tclearn audit verify -d deployment.json --vault URL`
# (docs/audit.md); here it reads the same logs from the embedded chain.

# %%
import tempfile
from pathlib import Path

import torch
from IPython.display import Image, display

from tclearn.learning.synth import synth_coalition
from tclearn.ledger.chain import embedded_chain
from tclearn.simulation.demo import DemoSettings, run_demo
from tclearn.types import Variant

torch.manual_seed(0)
torch.set_num_threads(2)
work = Path(tempfile.mkdtemp(prefix="tclearn-nb02-"))
synth_coalition(work / "data", hospitals=3, train=16, test=8, global_size=16, size=48, seed=0)
settings = DemoSettings(
    members=3,
    byzantine=1,
    attack="sign_flip",
    variant=Variant.B,
    data=work / "data",
    epochs=2,
    rounds=4,
    cases=16,
    baselines=False,
)
run = run_demo(settings, embedded_chain(settings.accounts), work / "run")
{key: run.summary[key] for key in ("variant", "members", "byzantine", "committed", "rejected")}

# %%
assert run.summary["committed"] >= 1 and run.summary["rejected"] >= 1

# %% [markdown]
# ## What the auditor holds
#
# The chain's events (every `ModelSubmitted`, `CandidateOpened`, `VoteCast`, `ModelCommitted`, ...) and the
# vault. `rebuild` replays the events into a `LedgerHistory`; nothing else is trusted.

# %%
from tclearn.ledger.history import rebuild  # noqa: E402
from tclearn.vault.store import FsspecStore  # noqa: E402

events = run.client.events()
vault = FsspecStore(f"file://{work / 'run' / 'vault'}")  # the auditor's own read access to the vault
history = rebuild(events)
names = {address: member.name for address, member in history.members.items()}
print(f"{len(events)} events; members:", {m.name: m.roles.names() for m in history.members.values()})

# %%
assert len(history.candidates) == settings.rounds + 1  # the genesis and one candidate a round

# %% [markdown]
# ## Lineage
#
# Every candidate with its parent and fate, and the committed chain from the genesis (model 0) to the head.
# A candidate the general refused to open carries its reason (an integrity check failed) and no votes.

# %%
from tclearn.audit.views import lineage_json  # noqa: E402
from tclearn.types import ModelState  # noqa: E402

lineage = lineage_json(history)
for model in lineage["models"]:
    print(
        f"model {model['id']}: parent {model['parent_id']}, proposer "
        f"{names.get(model['proposer'], 'the founder (genesis)')}, {model['state']}"
        + (f" ({model['reject_reason']})" if model.get("reject_reason") else "")
    )
print("committed lineage:", " -> ".join(map(str, lineage["lineage"])))

# %%
assert lineage["lineage"][0] == 0 and lineage["lineage"][-1] == lineage["head"] == run.head
assert set(lineage["lineage"]) == {0, *lineage["committed"]}
rejected = [c for c in history.candidates.values() if c.state is ModelState.REJECTED]
assert rejected and all(names[c.proposer] == "hospital-3" and not c.votes for c in rejected)

# %% [markdown]
# ## Votes and their evidence
#
# Each vote on the chain carries the validator's scores and the hash of its *evidence*: a JSON in the vault that
# says why it voted as it did (its scores and the head's on G and on its L, the tolerances, each stratum).
# The auditor reads it and checks it is the one the chain vouches for.

# %%
from tclearn.audit.evidence import votes_evidence  # noqa: E402

for model_id, candidate in sorted(history.candidates.items()):
    evidence = votes_evidence(vault, candidate)
    for vote in candidate.votes:
        why = evidence[vote.validator]
        print(
            f"model {model_id}: {names[vote.validator]} {'approves' if vote.approve else 'rejects '} "
            f"(G {vote.score_global:.3f} vs head {why.head_global:.3f}) - {why.reason}"
        )

# %%
for candidate in history.candidates.values():
    evidence = votes_evidence(vault, candidate)
    assert set(evidence) == {v.validator for v in candidate.votes}  # every vote's evidence is readable
    assert all(evidence[v.validator].approve == v.approve for v in candidate.votes)

# %% [markdown]
# The rejected candidate got no votes: its general measured it first and refused to open it. The general's
# integrity report is in the vault too, under the hash the chain's `Rejected` event names.

# %%
from tclearn.records import IntegrityReport  # noqa: E402

for candidate in rejected:
    assert candidate.report_hash is not None
    integrity = IntegrityReport.parse(vault.get(candidate.report_hash.hex()))
    for check in integrity.checks:
        print(f"model {candidate.id} {check.name:<10} {'ok  ' if check.ok else 'FAIL'} {check.detail}")

# %%
assert all(
    not all(c.ok for c in IntegrityReport.parse(vault.get(candidate.report_hash.hex())).checks)
    for candidate in rejected
    if candidate.report_hash is not None
)

# %% [markdown]
# ## Blob integrity
#
# Every blob the chain names — model, metadata, the general's integrity report, each vote's evidence — is
# re-hashed. `audit` adds the protocol rules (quorum, no double votes, the lineage) and returns findings.

# %%
from tclearn.audit.integrity import BlobChecks  # noqa: E402
from tclearn.audit.verify import audit  # noqa: E402

checks = BlobChecks(vault).check(history)
for check in checks[:8]:
    print(f"model {check.model_id} {check.what:<16} {check.sha256[:18]}... {check.status}")
print(f"... {len(checks)} blob references")
report = audit(history, vault)
print("audit ok:", report.ok, "| models checked:", report.models_checked, "| blobs verified:", report.blobs_verified)
for finding in report.findings:
    print(f"  {finding.severity}: {finding}")

# %%
assert report.ok and all(check.ok for check in checks)

# %% [markdown]
# What if someone alters a blob after the fact? Change one byte of the head model's blob in the vault folder and
# audit again: the hash no longer matches the chain's, and the audit fails naming the model.

# %%
head_hash = history.candidates[run.head].model_hash.hex()
blob = Path(vault.blob_path(head_hash))
original = blob.read_bytes()
_ = blob.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
tampered = audit(history, vault)
print("audit ok:", tampered.ok)
for finding in tampered.errors:
    print(f"  {finding.severity}: {finding}")
_ = blob.write_bytes(original)  # put it back

# %%
assert not tampered.ok and any(f.model_id == run.head and "tampered" in f.what for f in tampered.errors)
assert audit(history, vault).ok

# %% [markdown]
# ## The report
#
# `write_report` writes a self-contained folder: `report.html` and its figures (scores, votes, lineage).

# %%
from tclearn.audit.report import write_report  # noqa: E402

page = write_report(work / "report", history, run.summary, audit=report, evidence=run.evidence)
print(page)
display(Image(filename=str(work / "report" / "lineage.png")))
display(Image(filename=str(work / "report" / "votes.png")))

# %%
assert page.exists() and "audit" in page.read_text().lower()

# %% [markdown]
# Everything this notebook wrote is under `work`; remove it.

# %%
import shutil  # noqa: E402

shutil.rmtree(work)
