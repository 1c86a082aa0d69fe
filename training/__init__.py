"""Training stack for the GeoPix model: labelled scenes -> tiles -> instructions -> two-stage training.

Modules (import-light: torch is only imported by ``dataset``, ``trainer`` and ``evaluate``):

* ``rle`` - COCO compressed RLE in numpy; ``records`` - GeoPixInstruct JSONL interchange;
* ``scenes``, ``adapters``, ``catalog`` - labelled scenes from GeoTIFF + vectors, GeoTIFF
  masks, colour-mask chips, xBD JSON, box CSVs (and the shared sample data's settings);
* ``instances`` - instance masks from polygons or connected components;
* ``windows`` - tiles on the engine's grid with the engine's scene-wide scaling; JSONL export;
* ``instruct`` - instruction samples generated from labels, held-out templates;
* ``config``, ``dataset``, ``trainer`` - the two-stage, resumable, DDP-capable trainer;
* ``metrics``, ``semantic``, ``evaluate`` - cIoU/gIoU/per-class IoU, region accuracy,
  Osprey-style semantic similarity; ``cli`` - ``geopix-tiles train`` / ``evaluate``.
"""
