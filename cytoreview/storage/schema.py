"""The catalog's SQL schema as an ordered list of migrations.

Migration ``i`` (1-based) brings a catalog from schema version ``i - 1`` to ``i``. Never edit a
migration that has shipped: append a new one. :mod:`cytoreview.storage.catalog` applies them.
"""

from __future__ import annotations

_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL                      -- JSON
);

CREATE TABLE images (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,      -- file stem, unique in the project; used in exports
    source_path   TEXT NOT NULL,             -- where it was imported from (absolute)
    stored_path   TEXT,                      -- copy inside the project (relative), NULL if linked
    sha256        TEXT NOT NULL UNIQUE,
    width         INTEGER NOT NULL CHECK (width > 0),
    height        INTEGER NOT NULL CHECK (height > 0),
    channels      INTEGER NOT NULL,
    dtype         TEXT NOT NULL,
    n_pages       INTEGER NOT NULL DEFAULT 1,
    format        TEXT NOT NULL,
    class_label   TEXT,                      -- NULL: not labelled
    split         TEXT CHECK (split IN ('train', 'val', 'test')),
    is_seed       INTEGER NOT NULL DEFAULT 0 CHECK (is_seed IN (0, 1)),
    imported_at   TEXT NOT NULL,
    imported_by   TEXT NOT NULL
);
CREATE INDEX images_class ON images (class_label);

CREATE TABLE mask_versions (
    id            INTEGER PRIMARY KEY,
    image_id      INTEGER NOT NULL REFERENCES images (id),
    version       INTEGER NOT NULL CHECK (version > 0),
    path          TEXT NOT NULL UNIQUE,      -- relative to the project folder
    sha256        TEXT NOT NULL,
    provenance    TEXT NOT NULL CHECK (provenance IN ('manual', 'auto', 'corrected', 'approved')),
    author        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    source_model  TEXT,                      -- model id for auto masks
    uncertainty   REAL,                      -- per-image uncertainty of auto masks
    note          TEXT,
    UNIQUE (image_id, version)
);

CREATE TABLE predictions (
    id            INTEGER PRIMARY KEY,
    image_id      INTEGER NOT NULL REFERENCES images (id),
    model_id      TEXT NOT NULL,
    task          TEXT NOT NULL,             -- e.g. 'bethesda', 'binary'
    pred_class    TEXT NOT NULL,
    probabilities TEXT NOT NULL,             -- JSON {class: p}
    created_at    TEXT NOT NULL
);
CREATE INDEX predictions_image ON predictions (image_id);

CREATE TABLE reviews (
    id              INTEGER PRIMARY KEY,
    image_id        INTEGER NOT NULL REFERENCES images (id),
    reviewer        TEXT NOT NULL,
    class_call      TEXT,
    mask_version_id INTEGER REFERENCES mask_versions (id),
    decision        TEXT,                    -- e.g. 'approve', 'edit', 'skip'
    comment         TEXT,
    created_at      TEXT NOT NULL
);

CREATE TABLE training_runs (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL,             -- 'segmentation' or 'classification'
    model_id      TEXT,
    config        TEXT NOT NULL,             -- JSON
    status        TEXT NOT NULL,             -- 'running', 'finished', 'cancelled', 'failed'
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    metrics       TEXT,                      -- JSON
    checkpoint    TEXT,                      -- relative path
    author        TEXT NOT NULL
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    entity    TEXT NOT NULL,
    entity_id INTEGER,
    details   TEXT NOT NULL                  -- JSON
);
-- The audit log is append-only: the database itself refuses edits and deletions.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
-- Mask versions are history: never edited or removed.
CREATE TRIGGER mask_versions_no_update BEFORE UPDATE ON mask_versions
BEGIN SELECT RAISE(ABORT, 'mask versions are immutable'); END;
CREATE TRIGGER mask_versions_no_delete BEFORE DELETE ON mask_versions
BEGIN SELECT RAISE(ABORT, 'mask versions are immutable'); END;
"""

# Version 2: classification. Pixel size for measurements in micrometres, predictions tied to the
# mask they were made with, heatmaps (derived data: replaced when regenerated), and trainee
# answers of the teaching mode.
_V2 = """
ALTER TABLE images ADD COLUMN pixel_size_um REAL CHECK (pixel_size_um IS NULL OR pixel_size_um > 0);
ALTER TABLE predictions ADD COLUMN uncertainty REAL;
ALTER TABLE predictions ADD COLUMN mask_version_id INTEGER REFERENCES mask_versions (id);
CREATE INDEX predictions_task ON predictions (task, image_id);

CREATE TABLE heatmaps (
    id            INTEGER PRIMARY KEY,
    image_id      INTEGER NOT NULL REFERENCES images (id),
    model_id      TEXT NOT NULL,
    method        TEXT NOT NULL,             -- 'gradcam', 'gradcam++'
    target_class  TEXT NOT NULL,
    path          TEXT NOT NULL,             -- relative; uint8 PNG, value / 255 = relevance
    quality       TEXT NOT NULL,             -- JSON: entropy, flipping AUC, mass by region...
    created_at    TEXT NOT NULL,
    UNIQUE (image_id, model_id, method)
);

CREATE TABLE trainee_answers (
    id            INTEGER PRIMARY KEY,
    trainee       TEXT NOT NULL,
    image_id      INTEGER NOT NULL REFERENCES images (id),
    answer        TEXT NOT NULL,
    truth         TEXT NOT NULL,
    model_pred    TEXT,
    seconds       REAL,
    created_at    TEXT NOT NULL
);
CREATE INDEX trainee_answers_trainee ON trainee_answers (trainee);
"""

# Version 3: the EXIF orientation an image is shown in. NULL for images imported before it was
# honoured: their pixels stay as stored, so the masks painted on them still fit.
_V3 = """
ALTER TABLE images ADD COLUMN orientation INTEGER CHECK (orientation BETWEEN 1 AND 8);
"""

# Version 4: whole-slide images. A slide is a source, not an image: it is registered with its
# levels and pixel size and read lazily; cells and regions cut from it become ordinary images
# that remember where they came from (level-0 pixels, so every level maps back to one frame).
_V4 = """
CREATE TABLE slides (
    id             INTEGER PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,     -- file stem, unique among the project's slides
    source_path    TEXT NOT NULL,            -- where it was registered from (absolute)
    stored_path    TEXT,                     -- copy inside the project (relative), NULL if linked
    sha256         TEXT NOT NULL UNIQUE,
    width          INTEGER NOT NULL CHECK (width > 0),   -- level 0
    height         INTEGER NOT NULL CHECK (height > 0),
    levels         TEXT NOT NULL,            -- JSON [[height, width, downsample], ...]
    reader         TEXT NOT NULL,            -- 'tifffile', 'openslide' or 'zarr'
    pixel_size_um  REAL CHECK (pixel_size_um IS NULL OR pixel_size_um > 0),  -- level 0
    objective      REAL,
    imported_at    TEXT NOT NULL,
    imported_by    TEXT NOT NULL
);
ALTER TABLE images ADD COLUMN slide_id INTEGER REFERENCES slides (id);
ALTER TABLE images ADD COLUMN slide_level INTEGER CHECK (slide_level IS NULL OR slide_level >= 0);
ALTER TABLE images ADD COLUMN slide_x INTEGER;  -- level-0 pixels of the crop's top-left corner
ALTER TABLE images ADD COLUMN slide_y INTEGER;
CREATE INDEX images_slide ON images (slide_id);
"""

#: Ordered migrations; the schema version of a catalog is the number applied.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4)
SCHEMA_VERSION: int = len(MIGRATIONS)
