"""The defaults a user gets without changing anything: one definition for the CLI and the GUI.

Every value here was chosen by a benchmark (``tests/benchmarks/``, results in its README); the
comment beside each says which and what it measured. The training config, the workflows'
request objects, the command-line flags and the workbench's forms all read them from here, so
that they cannot drift apart.

Torch-free on purpose: the CLI parser reads these (see :mod:`cytoreview.choices`).

Besides the benchmarked numbers, the recipes also hold the settings every training form starts
from (encoder, backbone, device, seed...): the command-line flags, the workbench's forms and the
workflows' request objects all read them here. They were once written out in each front end and
had drifted apart (the workbench tied the classifier's mask backbone to the image backbone, the
command line did not); ``tests/gui/test_front_end_rules.py`` checks that a form left as it opens
asks for what the command line asks for without flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.choices import DEFAULT_ARCH, DEFAULT_BACKBONE, DEFAULT_SEGMENTER, DEVICES, TASKS


@dataclass(frozen=True)
class RunDefaults:
    """Settings shared by every job, whatever it trains or runs.

    Attributes
    ----------
    device
        ``auto``: a GPU when one really works, else the CPU (training and inference alike).
    seed
        The random seed (same seed, same run).
    """

    device: str = DEVICES[0]
    seed: int = 0


#: The settings every job starts from.
RUN = RunDefaults()


@dataclass(frozen=True)
class SegRecipe:
    """How a segmenter is trained and applied when the user says nothing.

    Attributes
    ----------
    epochs
        Upper bound; early stopping usually ends the run first.
    lr
        Adam's learning rate. On the Herlev benchmark (80 seeds) 1e-3 beat 1e-4 by +0.03
        cytoplasm / +0.07 nucleus Dice (0.751 / 0.873 vs 0.723 / 0.807); 2e-3 converged no
        faster.
    lr_patience, lr_factor, min_lr
        The schedule: after ``lr_patience`` epochs without a better validation score (see
        ``monitor``; these figures were measured on the loss) the learning rate is multiplied
        by ``lr_factor`` (not below ``min_lr``); 0 keeps it constant.
        Herlev, split 0, one core each: a constant rate stopped at epoch 98 with 0.728 / 0.856
        Dice (cytoplasm / nucleus); halving it after 10 stale epochs ran to epoch 156 and gave
        0.782 / 0.906; after 6 stale epochs (patience 15-18) it stopped too early (0.741-0.784).
    ema_decay
        Validate, keep and ship an exponential moving average of the weights (and batch-norm
        statistics), updated every step; 0 turns it off. With 0.99 (about 12 epochs of 8 steps)
        the validation curve is smooth, so early stopping no longer reacts to one lucky epoch:
        0.790 / 0.919 against 0.782 / 0.906 without (0.995 lagged: worse at every epoch).
    patience
        Epochs without a better validation score (see ``monitor``) before stopping: three
        times ``lr_patience``, so a run stops after the rate was lowered twice without effect.
    monitor
        What early stopping, the learning-rate schedule and the kept model watch on the validation
        images: ``image_iou``, the mean IoU of the classes the masks contain, each class's IoU
        averaged over the validation images (each cell counts once, as a reviewer and
        ``evaluate-seg`` count them); ``iou``, the same pooled over the images' pixels (a large cell
        outweighs a small one); or ``loss``, the validation loss. ``image_iou``: Herlev, 80 seeds, 4
        seed splits, one core each beside another run (2026-12-07): Dice 0.784 / 0.901 (cytoplasm /
        nucleus, mean over splits; spread 0.006 cytoplasm) against 0.782 / 0.901 (spread 0.014)
        pooled, in 77-130 epochs (3.0-5.2 min) against 67-231 (2.7-10.4 min): the same masks in 40 %
        less time, since the per-image score stops rising when the cells do and no longer waits on a
        few large ones. ``iou`` against ``loss`` (2026-12-06): on seed split 1 (15 validation cells)
        the loss flattened from epoch 38 while the IoU still rose; watching the IoU trained to epoch
        110 instead of 68 and gave Dice 0.753 / 0.897 (cytoplasm / nucleus) against 0.722 / 0.867;
        split 0: 0.787 / 0.916 against 0.789 / 0.913 (the same); split 2: 0.765 / 0.909 against
        0.761 / 0.893. Mean of the three: 0.768 / 0.907 against 0.757 / 0.891, for about 40 % more
        epochs.
    batch_size
        Images (or field windows) per step; an epoch's images are split into the whole number
        of batches nearest ``n / batch_size``, of even size (``EpochBatches``), so that no step
        trains on a remainder of one or two images (Herlev's 65 training cells: seven batches
        of 8 and one of 9, not a ninth of one cell).
    loss
        ``dice_ce``: class-weighted soft Dice + the plain per-pixel cross-entropy (nnU-Net's
        loss). Herlev, 80 seeds, 4 seed splits, one core each beside another run (2026-12-07):
        Dice 0.793 / 0.907 (cytoplasm / nucleus, mean over splits) against 0.784 / 0.901 with
        ``dice_focal`` (Dice + focal, alpha 0.25, gamma 2: the published protocol), nucleus
        better on all four splits and cytoplasm on three (split 0: 0.816 against 0.793), for
        about 45 % more epochs (101-209 against 77-130): the cross-entropy keeps improving the
        borders after the pooled Dice has flattened. Whole fields, nucleus-only (ISBI): 0.942
        against 0.943. A per-image Lovasz-softmax + cross-entropy (split 0: 0.793 / 0.905) did
        not help.
    tile_threshold
        In a crops project, images with a side above this are still tiled as fields.
    tta_crops, tta_fields
        Whether auto-masks average the 8 rotations and mirror images, for a model trained on
        cell crops and on fields. Crops (Herlev): +0.02 cytoplasm, +0.015 nucleus Dice for 8x
        the model calls (530 cells in 9 s on 2 cores). Fields (ISBI, nucleus-only, 30 fields):
        nucleus Dice 0.9437 against 0.9415 for 6.9x the time (84 s against 12 s): not worth
        it where a project has thousands of fields.
    amp
        Mixed precision on GPUs (bf16, else fp16).
    cpu_bf16
        bf16 autocast on CPUs that compute it natively (AVX-512 BF16 / AMX): 2.7x faster
        steps at 256 px, but on Herlev (64 px) no faster (2.0 against 1.9 s an epoch) and
        behind fp32 at the same epoch (validation loss 0.205 against 0.192 at epoch 116): off.
    semi
        Also learn from the unpainted images (mean teacher + confident pseudo-labels, see
        ``cytoreview.training.semi``). Off: with these defaults it gained on Herlev (80
        seeds, 530 unpainted cells, one core each, 2026-12-07), cytoplasm / nucleus Dice
        0.821 / 0.921 against 0.814 / 0.913 (split 0) and 0.814 / 0.919 against 0.803 / 0.920
        (split 1), but an epoch costs twice as much (3.85 against 1.92 s, one core each beside
        the other) and the runs stopped after 137 and 154 epochs against 88 and 173: 1.8-3.1x
        the training time, beyond the early stop within 3 minutes on 2 cores that a run with
        no flags must keep. ``--semi`` and the Train dock's box turn it on.
    calibrate
        After training, choose one decision offset (added to the log-probability of the cell
        classes against background before the arg-max) on the run's validation images, by
        their mean Dice, and apply it to every auto-mask (:mod:`cytoreview.inference.decision`).
        Herlev, 80 seeds, 4 seed splits, one core each beside another run (2026-12-07), the same
        models with and without it: Dice 0.805 / 0.907 (cytoplasm / nucleus, mean over splits)
        against 0.793 / 0.907; offsets +0.6, none, +1.0, +0.8 (splits 0-3), cytoplasm +0.009,
        0, +0.022, +0.017, nucleus within 0.002. One offset for both cell classes, not one each:
        15 validation cells chose a nucleus offset that the other cells' nucleus Dice did not
        like (it depends on the difference of the two offsets alone). ISBI fields: none chosen
        with full masks, +0.6 nucleus-only (0.933 against 0.932).
    arch
        The segmenter (a contribution name; its own settings, e.g. the U-Net's encoder, default
        in its settings dataclass).
    geometry
        ``auto``: crops or fields, decided from the painted masks (``cytoreview.data.geometry``).
    """

    arch: str = DEFAULT_SEGMENTER
    geometry: str = "auto"
    epochs: int = 300
    lr: float = 1e-3
    lr_patience: int = 10
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    ema_decay: float = 0.99
    patience: int = 30
    monitor: str = "image_iou"
    batch_size: int = 8
    loss: str = "dice_ce"
    tile_threshold: int = 1024
    tta_crops: bool = True
    tta_fields: bool = False
    amp: bool = True
    cpu_bf16: bool = False
    semi: bool = False
    calibrate: bool = True

    def tta_for(self, fields: bool) -> bool:
        """Whether auto-masks average the 8 views, for a fields model or a crops model."""
        return self.tta_fields if fields else self.tta_crops


#: The segmentation recipe in force.
SEG = SegRecipe()
#: What a segmentation run's early stopping can watch (``SegRecipe.monitor``).
SEG_MONITORS = ("image_iou", "iou", "loss")


@dataclass(frozen=True)
class ClsRecipe:
    """How a classifier is trained when the user says nothing.

    Chosen by ``bench_cls_herlev.py`` (5-fold, 2026-11-23): the 64 px input, lr 1e-3, 30 epochs,
    patience 10 and batches of 32 gave fusion-gap binary macro F1 0.866 and Bethesda macro F1
    0.753, where the earlier defaults (128 px for ~40 px cells, lr 1e-4, 100 epochs, patience
    20) spent more than 4 minutes an epoch on a busy 2-core machine. The augmentation is
    segmentation's (:class:`cytoreview.data.transforms.AugmentConfig`); its shifts went from
    20 % to 5 % of the crop on 2026-12-06, and on the same 5 folds and masks the classifier
    gained too: Bethesda / binary macro F1 0.738 / 0.864 against 0.723 / 0.832 (AUC 0.949
    against 0.932).

    Attributes
    ----------
    input_min, input_max
        The input side is the median image side rounded up to 32, within these bounds:
        enlarging a 40 px cell to 128 px adds no detail and costs 4x the compute.
    epochs, patience
        Upper bound and early-stopping patience (validation loss).
    lr
        Adam's learning rate.
    lr_patience, lr_factor, min_lr
        The schedule, as for segmentation: the rate is multiplied by ``lr_factor`` after
        ``lr_patience`` epochs without a better validation loss (0: constant).
    ema_decay
        Validate, keep and ship a moving average of the weights (0: off), as for segmentation.
    balance
        ``balanced``: epochs as long as the training set, each class an equal share;
        ``oversample``: minority classes topped up to the majority's count (Herlev: 789
        samples an epoch for 490 cells, 1.6x the time); ``none``.
    batch_size
        Images per step.
    task
        ``bethesda`` (the project's classes) or ``binary`` (needs review or not).
    arch, backbone
        The network and the timm CNN of its image branch (the benchmark's fusion-gap on
        resnet18).
    mask_backbone
        The CNN of the mask branch; None: the image branch's (see :meth:`mask_backbone_for`).
    tta
        Classify (``classify``, the workbench's Classify all, the review's heatmaps) on the
        mean of the 8 rotations and mirror images of each crop and its mask; training
        validates on the crops as they are. Off: Herlev, 5 folds, the same models scored both
        ways (``bench_cls_herlev.py --compare-tta``, 2026-12-06): with today's augmentation
        (shifts of 5 %) Bethesda / binary macro F1 0.748 / 0.866 against 0.738 / 0.864, the
        Bethesda figure higher in 2 folds, lower in 1 and the same in 2: within the folds'
        spread, for 8 model calls a cell (classify + Grad-CAM++ of one cell 27 ms against
        6 ms on 2 cores, above the 20 ms the review is allowed). With the 20 % shifts before,
        it had gained in every fold (0.746 / 0.848 against 0.723 / 0.832).
    measurements
        Join a measurement model to a network that sees masks: a small perceptron ensemble on
        each cell's sizes, colours, nucleus shape and position and texture measured at the
        crop's own resolution (:mod:`cytoreview.morphometry.features`), fitted with the
        network on the same cells; the classifier's call is the geometric mean of both
        models' probabilities. On: Herlev, 5 folds, engine masks, the same networks scored
        both ways (``bench_cls_herlev.py --compare-measurements``, 2026-12-07): Bethesda /
        binary macro F1 0.772 / 0.876 joined against 0.734 / 0.856 for the network alone (AUC
        0.967 against 0.944, higher in every fold); the measurements alone 0.768 / 0.866
        (with the 27 measurements before nucleus position and texture: 0.748 / 0.849 alone,
        0.759 / 0.867 joined). The network sees each cell letterboxed to the input size, so
        it cannot tell a large nucleus from a small one: the measurements can. Classify +
        Grad-CAM++ of one cell 15.7 ms against 14.6 ms with the 27 measurements (ONNX
        Runtime, 2 threads, 64 px, one run after the other); a second to fit. Rerun the
        same day on engine masks rebuilt by that day's segmentation (the earlier masks were
        cached by older code): 0.789 / 0.891 joined against 0.762 / 0.869 for the network
        alone (masks from the Dice + cross-entropy loss), 0.792 / 0.889 against 0.752 / 0.850
        (Dice + focal masks).
    """

    task: str = TASKS[0]
    arch: str = DEFAULT_ARCH
    backbone: str = DEFAULT_BACKBONE
    mask_backbone: str | None = None
    input_min: int = 64
    input_max: int = 128
    epochs: int = 30
    patience: int = 10
    lr: float = 1e-3
    lr_patience: int = 0
    lr_factor: float = 0.5
    min_lr: float = 1e-5
    ema_decay: float = 0.0
    balance: str = "oversample"
    batch_size: int = 32
    tta: bool = False
    measurements: bool = True

    def mask_backbone_for(
        self, backbone: str, mask_backbone: str | None = None, parent: str | None = None
    ) -> str:
        """The mask branch's CNN: the one asked for, else the parent's, else the image branch's.

        The one rule for the command line and the workbench (the workbench offers no mask
        backbone of its own). The image branch's by default, as ``bench_cls_herlev.py`` trained
        the models that chose these defaults; with the default backbone that is resnet18 either
        way. A fine-tuned model keeps its parent's, so that the parent's weights still fit.

        Parameters
        ----------
        backbone
            The image branch's CNN.
        mask_backbone
            What the person asked for (None: not set).
        parent
            The parent model's mask backbone when fine-tuning (None: not fine-tuning, or a
            model without one on record).
        """
        return mask_backbone or parent or self.mask_backbone or backbone


#: The classification recipe in force.
CLS = ClsRecipe()


#: Micrometres per pixel a microscope image can have: the one rule for a plausible pixel size,
#: used where a size is typed (CLI, workbench), read from a TIFF's resolution tags, stored and
#: measured with. A 100x oil objective on a camera gives ~0.05 µm/px, a 40x scanner 0.25, a 10x
#: objective ~1; above 10 µm/px a 5-10 µm nucleus spans about a pixel, so areas and N:C mean
#: nothing, and a 72-dpi screenshot's tag (353 µm/px) is not a microscopy size at all.
PIXEL_SIZE_UM_RANGE = (0.01, 10.0)


@dataclass(frozen=True)
class SlideRecipe:
    """How whole slides are cut into cells and segmented when the user says nothing.

    Attributes
    ----------
    chunk
        Side of a segmentation core and of the label store's chunks (px of the level
        segmented). 1024: a core plus halo is about 5 MB of RGB and 15 MB of float32
        probabilities, so a worker stays small; larger cores only save halo reads.
    halo_um
        Context read around each core, in micrometres: at least half of a large squamous cell
        (superficial cells reach 50-70 um across), so a cell cut by a core border is seen whole
        by both neighbours.
    halo_px
        The same when the slide's pixel size is unknown.
    thumbnail_side
        Longest side of the level the tissue mask is computed on (the smallest level at least
        this large): enough to see a single isolated cell at 0.25 um/px (~8 px of it at 4096).
    """

    chunk: int = 1024
    halo_um: float = 40.0
    halo_px: int = 160
    thumbnail_side: int = 4096

    def halo(self, pixel_size_um: float | None) -> int:
        """The halo in pixels of a level with this pixel size (None: :attr:`halo_px`)."""
        if not pixel_size_um:
            return self.halo_px
        return max(16, round(self.halo_um / pixel_size_um))


#: The slide settings every slide job starts from.
SLIDE = SlideRecipe()


def check_pixel_size(value: float) -> float:
    """``value`` as a float when it is a plausible microscope pixel size (µm/px).

    Raises
    ------
    ValueError
        When it is not a finite number within :data:`PIXEL_SIZE_UM_RANGE`; the message says the
        range and typical values.
    """
    low, high = PIXEL_SIZE_UM_RANGE
    number = float(value)
    if not low <= number <= high:  # NaN fails both comparisons
        raise ValueError(
            f"pixel size {value} µm/px is not a microscope pixel size: expected {low:g}-{high:g} "
            "µm/px (a 40x scanner is about 0.25, a 10x objective about 1)"
        )
    return number


@dataclass(frozen=True)
class CellFinderDefaults:
    """How candidate cells are found on a slide or field when the user says nothing.

    Measured with ``tests/benchmarks/bench_cell_finder.py`` (synthetic slides with known masks,
    the Otsu path; numbers in its docstring).

    Attributes
    ----------
    tile, halo
        Level-0 px of each tile's core and of the margin read around it. A nucleus belongs to
        the tile whose core holds its centroid; the halo must exceed the widest nucleus (a
        600 µm² nucleus is 28 µm, 110 px at 0.25 µm/px) so that such a nucleus is seen whole.
    nucleus_um2
        Plausible nucleus areas. 20 µm²: a pyknotic superficial nucleus (~5 µm wide) still
        counts; bacteria, debris and single neutrophil lobes mostly do not (on the synthetic
        slide 15 µm² found 98 % of the nuclei at precision 0.31, 20 µm² 96 % at 0.42, 30 µm²
        93 % at 0.70: most false hits are leucocytes and debris). 600 µm²: above HSIL and
        keratinising SCC nuclei (~20 µm wide, ~300 µm²), with room for two touching ones that
        were not split apart.
    nucleus_px
        The same range in px where the pixel size is unknown: nuclei of 7-100 px across.
    nominal_pixel_size_um
        The scale the model-free detector assumes where the pixel size is unknown (a 40x scan).
    min_context
        Share of a ring around a nucleus (1-3 µm out) that must be cell material: a naked
        nucleus or an inflammatory cell on bare glass is not a candidate cell.
    crop_um, crop_px
        Side of a crop cut around a candidate (a large squame is ~60 µm), and in px where the
        pixel size is unknown.
    merge_distance_um
        Candidates closer than this are one cell: a large (HSIL) nucleus split in pieces,
        whose centroids lay 7-13 µm apart on the synthetic slide, or a binucleate cell.
    merge_iou
        Candidates whose crops overlap more than this (intersection over union) are one.
    tissue_min_od, tissue_min_object_um2, tissue_margin_um
        Tissue mask: optical density that counts as material (pale cytoplasm reads ~0.15, the
        glass's noise a few hundredths), specks smaller than a small cell dropped, and a
        margin added so that cell borders are kept.
    """

    tile: int = 1024
    halo: int = 128
    nucleus_um2: tuple[float, float] = (20.0, 600.0)
    nucleus_px: tuple[float, float] = (40.0, 8000.0)
    nominal_pixel_size_um: float = 0.25
    min_context: float = 0.3
    crop_um: float = 64.0
    crop_px: int = 256
    merge_distance_um: float = 10.0
    merge_iou: float = 0.5
    tissue_min_od: float = 0.08
    tissue_min_object_um2: float = 60.0
    tissue_margin_um: float = 16.0


#: The cell finder's settings in force.
CELL_FINDER = CellFinderDefaults()


@dataclass(frozen=True)
class ComputeDefaults:
    """Where batch jobs (segment, classify...) run when the user names no scheduler.

    See :mod:`cytoreview.workflows.executors`. ``bench_segment_dask.py`` (2026-12-06, 2 shared
    vCPUs): this process segmented 64 cells of 128 px with an fp32 U-Net at 4.7 images/s, a
    LocalCluster of 1 worker at 4.2 and of 2 workers at 2.8 (plus 1 s to start and 3-5 s for a
    job's first items, while workers import the runtime); with the tiny network of the tests
    (Python-bound: reading, post-processing, writing) 139 against 99 and 94 images/s. On 2
    cores ONNX Runtime already uses both inside one process and the main process's mask writes
    pace every driver, so worker processes only add transfers: the cluster is the default only
    from ``min_cluster_cores`` (not measured here: a machine with more cores should confirm it).

    Attributes
    ----------
    scheduler
        ``None``: decide by the job's size (below). ``"local"`` always starts a LocalCluster of
        worker processes, ``"none"`` always runs in this process, and an address
        (``tcp://host:8786``) uses a running cluster.
    min_cluster_items
        Jobs with fewer items run in this process: starting a LocalCluster (worker processes
        that import the model runtime) costs seconds that a handful of images do not repay.
    min_cluster_cores
        Machines with fewer usable cores run every job in this process (see above).
    connect_timeout_s
        Seconds to wait for a scheduler address to answer before saying it does not.
    in_flight_per_worker
        Items submitted ahead per worker thread: enough to keep workers busy while results
        travel back, few enough that memory stays bounded whatever the job's size.
    segment_chunks_ahead
        Batches ``segment`` computes at once in this process, each in its own thread, while
        the main thread writes the masks of the last one. With two, one batch's reading,
        letterboxing and clean-up (one thread each) fill the gaps of the other's model call,
        whose int8 kernels keep two threads only partly busy. ``bench_seg_speed.py``
        (2026-12-07, 2 vCPUs, 64 cells of 256 px, ONNX Runtime on 2 threads, median of 3
        rounds, 2 runs each): int8 ``segment`` 1.57-1.58x the bare fp32 session with one
        batch at a time, 1.73-1.76x with two; fp32 0.82x against 0.75-0.76x. Beside a busy
        process on one core: int8 2.26x against 2.55x, fp32 0.88x against 1.07x. Serialising
        the model calls of the two batches (a lock) gave 1.63-1.68x idle and 2.02x beside the
        busy process: the concurrent calls are what pays.
    """

    scheduler: str | None = None
    min_cluster_items: int = 64
    min_cluster_cores: int = 4
    connect_timeout_s: float = 10.0
    in_flight_per_worker: int = 2
    segment_chunks_ahead: int = 2


#: Where batch jobs run.
COMPUTE = ComputeDefaults()
