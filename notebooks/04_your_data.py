# %% [markdown]
# # 4. Bring your own data
#
# A hospital joins a coalition with a folder. This notebook shows the layout the coalition reads, in 2-D (pictures)
# and 3-D (volumes), how to write your own NIfTI volume into it, the *preflight* scan that checks a folder before
# any training starts, and what its errors look like — each one names the file and what is wrong.
#
# ## The layout
#
# ```
# DIR/<hospital>/train/images/<name>.png     DIR/<hospital>/train/masks/<name>.png
# DIR/<hospital>/test/images/...             DIR/<hospital>/test/masks/...       # the hospital's local test set L
# DIR/global/images/...                      DIR/global/masks/...                # the shared global test set G
# ```
#
# Images and masks are matched by name without suffix (`case7.nii.gz` ↔ `case7.png` is fine); a mask pixel above
# zero is foreground. Formats: PNG/JPEG/TIFF/BMP, NIfTI (`.nii`, `.nii.gz`), DICOM slices and series folders
# (docs/learning.md, "Data layout"). `synth_coalition` writes this layout with synthetic cases: PNGs in 2-D,
# int16 NIfTI volumes (Hounsfield units) in 3-D.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from tclearn.errors import DataError
from tclearn.learning.data import read_image, read_mask
from tclearn.learning.scan import scan_segmentation
from tclearn.learning.synth import synth_coalition

work = Path(tempfile.mkdtemp(prefix="tclearn-nb04-"))
for dims, size in ((2, 48), (3, 24)):
    synth_coalition(work / f"synth-{dims}d", hospitals=2, train=4, test=2, global_size=4, size=size, dims=dims)
for folder in sorted(p for p in (work / "synth-3d").rglob("*") if p.name in ("images", "masks")):
    files = sorted(folder.iterdir())
    print(f"{folder.relative_to(work)!s:<32} {len(files)} files, e.g. {files[0].name}")

# %% [markdown]
# ## The preflight scan
#
# `scan_segmentation(folder)` reads only headers (and the masks), so even a folder of large volumes is checked in
# seconds. It returns one item per image with the shape the loader will return, `(channels, *spatial)` — volumes
# turned to RAS axes — and writes nothing.

# %%
for dims in (2, 3):
    items = scan_segmentation(work / f"synth-{dims}d" / "hospital-1" / "train")
    print(f"{dims}-D: {len(items)} images, e.g. {items[0].name}: shape {items[0].shape}, {items[0].nbytes:,} bytes")
    assert len(items) == 4 and all(item.spatial_dims == dims for item in items)

# %% [markdown]
# ## Your own volume, written by hand
#
# Say your CT and its segmentation are arrays (from your PACS export, a research pipeline, ...). Save them as NIfTI
# with nibabel, giving the affine that maps voxels to millimetres: here 1.5 x 1.5 mm in-plane, 3 mm slices. The
# image keeps its real values (Hounsfield units); windowing is training's business, not the reader's.

# %%
mine = work / "my-ct"
(mine / "images").mkdir(parents=True)
(mine / "masks").mkdir()
affine = np.diag([1.5, 1.5, 3.0, 1.0])
rng = np.random.default_rng(0)
for case in ("case1", "case2"):
    ct = rng.normal(40, 15, (32, 32, 12)).astype(np.int16)  # soft tissue around 40 HU
    lesion = np.zeros(ct.shape, np.uint8)
    lesion[10:18, 12:20, 4:8] = 1
    ct[lesion == 1] += 60  # a brighter lesion
    nib.save(nib.Nifti1Image(ct, affine), mine / "images" / f"{case}.nii.gz")
    nib.save(nib.Nifti1Image(lesion, affine), mine / "masks" / f"{case}.nii.gz")

items = scan_segmentation(mine)
[(item.name, item.shape, item.spatial_dims) for item in items]

# %%
assert [(item.name, item.shape) for item in items] == [("case1", (1, 32, 32, 12)), ("case2", (1, 32, 32, 12))]

# %% [markdown]
# What the coalition will read: the volume in HU, its mask binary. One slice through the lesion:

# %%
volume, mask = read_image(items[0].image), read_mask(items[0].mask)
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
axes[0].imshow(volume[0, :, :, 6].T, cmap="gray", origin="lower")
axes[0].set_title("case1, slice 6 (HU)")
axes[1].imshow(volume[0, :, :, 6].T, cmap="gray", origin="lower")
axes[1].contour(mask[0, :, :, 6].T, levels=[0.5], colors="red")
axes[1].set_title("with its mask")
for ax in axes:
    ax.axis("off")
plt.show()

# %%
assert volume.shape == mask.shape == (1, 32, 32, 12)
assert volume[mask > 0].mean() > volume[mask == 0].mean() + 30  # the lesion is where the mask says

# %% [markdown]
# ## What the errors look like
#
# Each problem is one `DataError` naming the file and the way out — no traceback to read. `check` runs the scan
# and prints what it says.


# %%
def check(folder: Path) -> str:
    """The scan's verdict on `folder`: its item count, or its error's message."""
    try:
        return f"ok: {len(scan_segmentation(folder))} images"
    except DataError as exc:
        return f"{type(exc).__name__}: {exc}"


# %% [markdown]
# **A missing mask**: an image arrives without its segmentation.

# %%
nib.save(nib.Nifti1Image(np.zeros((32, 32, 12), np.int16), affine), mine / "images" / "case3.nii.gz")
missing = check(mine)
print(missing)

# %%
assert missing.startswith("DataError") and "case3" in missing and "no mask" in missing

# %% [markdown]
# **2-D and 3-D mixed**: a screenshot slipped into a folder of volumes. One folder holds one or the other.

# %%
(mine / "images" / "case3.nii.gz").unlink()
slice_png = next((work / "synth-2d" / "hospital-1" / "train" / "images").iterdir())
(mine / "images" / f"zz-slice{slice_png.suffix}").write_bytes(slice_png.read_bytes())
(mine / "masks" / f"zz-slice{slice_png.suffix}").write_bytes(slice_png.read_bytes())
mixed = check(mine)
print(mixed)

# %%
assert mixed.startswith("DataError") and "2-D" in mixed and "3-D" in mixed and "zz-slice" in mixed

# %% [markdown]
# **An image and its mask of different shapes**: the mask was drawn on a resampled copy.

# %%
for stray in ("images", "masks"):
    (mine / stray / f"zz-slice{slice_png.suffix}").unlink()
nib.save(nib.Nifti1Image(np.ones((32, 32, 10), np.uint8), affine), mine / "masks" / "case2.nii.gz")
shapes = check(mine)
print(shapes)

# %%
assert shapes.startswith("DataError") and "case2" in shapes

# %% [markdown]
# Once the scan passes, the folder is ready: give its parent as `--data` to `tclearn demo`, or as a site's `data`
# in `tclearn coalition up` (docs/node.md).

# %% [markdown]
# Everything this notebook wrote is under `work`; remove it.

# %%
import shutil  # noqa: E402

shutil.rmtree(work)
