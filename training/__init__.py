"""Training stack for the GeoPix model: labelled scenes -> tiles -> instructions -> two-stage training.

Modules (import-light: torch is only imported by ``dataset``, ``augment``, ``trainer``,
``evaluate`` and ``prompt_eval``):

* ``rle`` - COCO compressed RLE in numpy; ``records`` - GeoPixInstruct JSONL interchange;
* ``scenes``, ``adapters``, ``catalog`` - labelled scenes from GeoTIFF + vectors, GeoTIFF
  masks, colour-mask chips, xBD JSON, box CSVs, weak NDWI/NDVI labels (and the shared sample
  data's settings);
* ``instances`` - instance masks from polygons or connected components;
* ``windows`` - tiles on the engine's grid with the engine's scene-wide scaling; JSONL export;
* ``instruct`` - instruction samples generated from labels, held-out templates;
* ``vocabulary`` - class synonyms, unrelated concepts, dev and held-out word lists;
* ``augment`` - GSD zoom, flips/turns, colour/brightness/grey augmentation;
* ``config``, ``dataset``, ``trainer`` - the two-stage, resumable, DDP-capable trainer;
* ``metrics``, ``semantic``, ``evaluate`` - cIoU/gIoU/per-class IoU, region accuracy,
  Osprey-style semantic similarity; ``prompt_eval`` - per class / per source IoU of text
  prompts, paraphrases, unknown concepts; ``default_recipe`` - the shipped model; ``cli`` - ``geopix-tiles train`` / ``evaluate``.
"""
