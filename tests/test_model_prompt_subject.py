"""Free text is read by its subject: the class decision is made on the words before the relation."""
from __future__ import annotations

import pytest

from geopix_tiles.model.prompt_subject import subject_phrase


@pytest.mark.parametrize("text, subject", [
    ("the small houses near the road", "the small houses"),
    ("all roofs next to the river", "all roofs"),
    ("only the roofs, not the roads", "only the roofs"),
    ("the buildings that are red", "the buildings"),
    ("trees in the park", "trees"),
    ("the lagoons in front of the villas", "the lagoons"),
    ("the roads and not the buildings", "the roads"),
])
def test_the_subject_ends_at_the_first_relation(text, subject):
    assert subject_phrase(text) == subject


@pytest.mark.parametrize("text", ["houses", "pools of water", "paved streets and roads", "cloud cover",
                                  "in the north", "bare soil"])
def test_text_without_a_relation_is_kept(text):
    assert subject_phrase(text) == text
