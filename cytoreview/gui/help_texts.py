"""Words shown by the workbench: tooltips and short help, kept apart from the layout code.

Panels look texts up by key, so wording can be reviewed (or translated) in one place.
"""

from __future__ import annotations

from cytoreview.defaults import CLS

#: Style of the short help line at the top of each panel: quiet, it is read once.
INTRO_STYLE = "color: #9aa3ad; font-size: 11px"

#: Short help at the top of each panel.
PANEL_HELP: dict[str, str] = {
    "project": "Double-click an image to paint it; paint the seeds first.",
    "annotate": (
        "Every finished stroke is saved as a new mask version; older versions are kept. "
        "Approve when the mask is right."
    ),
    "train": (
        "Trains on the painted masks in the background; Stop keeps the best model so far. "
        "Then auto-segment the other images."
    ),
    "classifier": (
        "Trains the Bethesda (or binary) classifier on the labelled images in the background; "
        "then classify and explain every image for the review queue."
    ),
    "generate": (
        "Makes an auto mask for every image without a person's mask (only the rows selected in "
        "the table if 'Selected images only' is ticked). A person's mask is never replaced; "
        "each new mask names the method as its source, and training uses these masks only "
        "when 'Also learn from generated masks' is ticked."
    ),
    "from_labels": (
        "Makes masks from the class labels the images already have, with no painting: the "
        "method learns from the labelled images (test split left out), then masks every image "
        "without a person's mask. Each mask gets an uncertainty, so the review queue shows the "
        "least sure first; a person's mask is never replaced."
    ),
    "review": (
        "Most uncertain first. Accept approves the mask, Edit opens it in Annotate (edits are "
        "saved as corrected), Skip sends it to the end. Your class call is kept beside the model's."
    ),
    "teach": (
        "Call the class of each image blind (keys 1-9), then see the expert label, the model, "
        "the mask and the heatmap. Classes you miss come back more often."
    ),
    "help": "Every keyboard shortcut of the workbench; below, a check of this computer.",
}

TOOLTIPS: dict[str, str] = {
    # help panel
    "system_check": (
        "Checks Python and packages, the GPU, the display's OpenGL, the project folder (write "
        "access, free disk, locks), plugins and Dask: the same as `cytoreview doctor`. Each "
        "line is OK, WARN or FAIL with the fix."
    ),
    # project panel
    "open_project": "Open an existing project folder",
    "new_project": "Create a new, empty project folder with a class scheme",
    "import_folder": (
        "Import a folder (sub-folder names are the classes, e.g. NILM/, HSIL/) or a CSV table, "
        "with painted masks if you have them. Files already in the project are skipped, "
        "unreadable ones are listed."
    ),
    "import_source": "A folder whose sub-folders are classes, or a CSV manifest (path column)",
    "import_masks": (
        "Optional folder of label masks named like the images (0 background, 1 cytoplasm, "
        "2 nucleus): they become 'manual' masks"
    ),
    "import_path_column": "The CSV column with each image's path (relative paths: see 'Images in')",
    "import_class_column": "The CSV column with each image's class (optional)",
    "import_image_dir": "Folder that relative paths of the CSV start from (default: the CSV's)",
    "import_link": "Leave the images where they are; the project records their path and hash",
    "cancel_import": "Stop the import after the current file; what is imported stays",
    "filter_class": "Show only images of this class",
    "filter_status": "Show only images whose current mask is of this kind",
    "filter_seeds": "Show only the seed images (the ones to paint by hand first)",
    "filter_name": "Show only images whose name contains this text",
    "table": (
        "Double-click an image (or press Enter) to open it for painting; click the class of a "
        "selected row (or press F2) to correct it"
    ),
    "pick_seeds": (
        "Pick a reproducible, class-balanced seed set of this many images per class; seeds "
        "already painted stay seeds"
    ),
    "seeds_per_class": "Seed images to paint per class",
    "previous_image": "Open the previous image of the table (PageUp or ,)",
    "next_image": "Open the next image of the table (PageDown or .)",
    # annotate panel
    "label_cytoplasm": "Paint cytoplasm (key C)",
    "label_nucleus": "Paint nucleus (key N)",
    "label_eraser": "Paint background, i.e. erase (label 0)",
    "mode_paint": "Brush (keys P or 2)",
    "mode_fill": "Fill a connected region with the selected label (keys F or 4)",
    "mode_polygon": "Polygon: click the corners, Enter closes it (key 3)",
    "mode_erase": "Eraser brush (keys E or 1)",
    "mode_pan": "Move and zoom without painting (keys Z or 6; hold Space for a moment)",
    "brush_size": "Brush diameter in pixels ([ smaller, ] larger)",
    "undo": "Undo the last stroke (Ctrl+Z)",
    "redo": "Redo (Ctrl+Shift+Z)",
    "tool_initial": (
        "Replace the mask with a first guess: Otsu threshold for the cell, the darkest blob "
        "for the nucleus. Undo brings your painting back."
    ),
    "tool_grabcut": "Snap the current mask to the image's edges (GrabCut started from the mask)",
    "tool_fill_holes": "Fill holes: background inside a cell becomes cytoplasm",
    "tool_repair": (
        "Give every nucleus a thin cytoplasm rim, so that no nucleus touches the background"
    ),
    "approve": "Save the mask as approved: checked by a person and right as it is",
    "measure": "Live areas in pixels; N:C is nucleus area / cytoplasm area",
    # train panel (a method's own settings take their tooltips from its settings dataclass)
    "seg_method": (
        "The segmentation method (built in, or added by an installed plugin); its own settings "
        "appear below it. Hover over an entry for what it is and whose method it follows."
    ),
    "seg_preset": (
        "A published training recipe for this method: it fills the fields below and sets what "
        "the form does not show (learning rate, batch, loss...); fields you then change win"
    ),
    "no_preset": "No installed plugin publishes a training recipe for this method",
    "include_generated": (
        "Also train on masks a mask generator made (source generator:...), e.g. to start a "
        "project with no painting; masks a model made are never trained on"
    ),
    "semi": (
        "Also learn from the images nobody painted: a slowly averaged copy of the network "
        "labels them where it is confident, and the network learns to agree on altered views. "
        "These labels are never saved as masks and weigh less than painted ones. On Herlev "
        "(80 painted cells) it gained about 0.01 cytoplasm Dice, but training took 2-3 times "
        "longer, so it is off by default"
    ),
    "generator": (
        "A method that makes masks from the image alone (no painting); its settings appear "
        "below it. Hover over an entry for what it is."
    ),
    "compare_encoders": (
        "Train the chosen method once per encoder (the Train form's recipe, one validation "
        "split) and show a table of accuracy, Dice, IoU, precision and sensitivity per class, "
        "and training time (Wubineh et al.'s backbone comparison)"
    ),
    "generate_masks": (
        "Make masks from the image alone (no painting) with a mask generator, for every image "
        "without a person's mask (only the selected rows if 'Selected images only' is ticked); "
        "a person's mask is never replaced"
    ),
    "masks_from_labels": (
        "Make masks from the images' class labels alone (e.g. a normal/abnormal classifier "
        "whose explanations are grouped into nucleus and cytoplasm and refined with GrabCut); "
        "needs images with a class label"
    ),
    "no_label_generator": (
        "No method that learns masks from class labels is installed: install one (e.g. "
        "pip install plugins/cytoreview-xai), then restart the workbench"
    ),
    "no_generator": (
        "No mask generator is installed: install a plugin that provides one (e.g. "
        "pip install plugins/cytoreview-otsu), then restart the workbench"
    ),
    "epochs": "Upper limit of passes over the painted images; early stopping may end sooner",
    "time_budget": "Stop after this many minutes (0: no limit); the best model so far is kept",
    "device": "auto: a GPU when there is one, else all CPU cores",
    "input_size": "Side of the network input in pixels (auto: the median image side, 64-256 px)",
    "start_training": "Train a new model on every manual, corrected or approved mask",
    "stop": "Stop after the current step; the best model so far is kept",
    "auto_segment": (
        "Generate auto masks with the newest model for every image without a person's mask"
    ),
    "selected_only": (
        "Auto-segment (or generate masks for) only the rows selected in the project table "
        "(Ctrl/Shift-click to select several); images with a person's mask are never overwritten"
    ),
    "compute": (
        "Where Auto-segment, the Classifier dock's Classify all and the Slides dock's jobs "
        "(cell finder, slide segmentation) compute. Empty: this machine (a cluster of worker "
        "processes for large jobs on 4+ cores), or the scheduler in $CYTOREVIEW_SCHEDULER. "
        "A Dask scheduler "
        "address (tcp://host:8786) runs it on that cluster, whose workers must see the project "
        "folder; 'local' always starts worker processes here, 'none' always runs in this "
        "process. Stop works the same"
    ),
    "tta": (
        "Average the model over the 8 rotations and mirror images of each image: 8x the time. "
        "auto: on for a model trained on cell crops (about +0.02 Dice on real cells), off for "
        "one trained on whole fields (+0.002 Dice there, for 7x the time)"
    ),
    # classifier panel
    "cls_task": "bethesda: the scheme's classes; binary: revisable vs not-revisable",
    "cls_arch": (
        "The classification method (built in, or added by an installed plugin); its own "
        "settings appear below. Hover over an entry for what it is."
    ),
    "cls_backbone": "The CNN backbone (random weights: nothing is downloaded)",
    "cls_mask_backbone": (
        "The CNN of the mask branch; 'as image': the image branch's (or the parent model's "
        "when fine-tuning)"
    ),
    "cls_mask_unused": "This method does not read the mask: it has no mask branch",
    "cls_measurements": (
        "Join a measurement model to the network: each cell's nucleus and cytoplasm areas, "
        "N:C, colours, nucleus shape and position and chromatin texture, read from its mask at "
        "full resolution; the call is the geometric mean of both models' probabilities, and "
        "the heatmap shows the network's part"
    ),
    "cls_measurements_unused": "Measurements are read from masks: this method has none",
    "cls_input": "Side of the network input in pixels (images are letterboxed); auto: the "
    "median image side rounded up to 32, 64-128 px (a fine-tuned model keeps its size)",
    "cls_start": "Train a new classifier on every labelled image (and its current mask)",
    "classify_all": "Predict the class of every image with the current classifier, as "
    "`cytoreview classify` does"
    + (" (on the mean of each cell's 8 rotations and mirror images)" if CLS.tta else ""),
    "explain_all": "Compute and store a Grad-CAM++ heatmap of every image",
    # review panel
    "review_show_done": "Also list the images already approved and called",
    "review_queue": "Click an image to open it; the most uncertain come first, skipped last",
    "review_accept": "Approve the mask as it is and go to the next image (Alt+A)",
    "review_edit": "Correct the mask in the Annotate tab; edits are saved as corrected (Alt+E)",
    "review_skip": "Send this image to the end of the queue (Alt+S)",
    "review_call": "Your own class for this image, stored beside the model's",
    "review_adopt": (
        "Make your call the image's class label: training and evaluation use it from now on "
        "(recorded in the audit log)"
    ),
    "heatmap_toggle": "Show where the classifier looked (computed on demand, then stored)",
    "heatmap_opacity": "Opacity of the heatmap over the image",
    # teach panel
    "trainee": "Your name: answers and scores are kept per trainee",
    "teach_start": "Start a blind session: class, mask and heatmap stay hidden until you answer",
    "teach_next": "Draw the next case; classes you miss come back more often (Alt+N)",
}
