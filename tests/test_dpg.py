"""DPG-Bench scoring in both modes, against hand-computed expectations from the reference description."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from softcfg.metrics import dpg
from softcfg.options import UserError


def write_table(path: Path, rows: list[tuple[str, int, str, str, str]]) -> Path:
    """rows: (item, proposition, dependency, tuple, question)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(dpg.COLUMNS)
        for item, qid, dep, tup, question in rows:
            writer.writerow(
                [item, "text", "kw", qid, dep, tup.split(" - ")[0], tup.split("(")[0], tup, question]
            )
    return path


# item a: q1 <- q2 <- q3 (a chain); item b: q3 is listed before its parent q2.
ROWS = [
    ("a", 1, "0", "entity - whole (cat)", "is there a cat?"),
    ("a", 2, "1", "attribute - color (cat, red)", "is the cat red?"),
    ("a", 3, "2", "relation - spatial (cat, dog, left of)", "is the cat left of the dog?"),
    ("b", 3, "2", "relation - spatial (cow, pig, above)", "is the cow above the pig?"),
    ("b", 1, "0", "entity - whole (cow)", "is there a cow?"),
    ("b", 2, "1", "entity - whole (pig)", "is there a pig?"),
]


@pytest.fixture
def table(tmp_path: Path) -> list[dpg.Question]:
    return dpg.read_questions(write_table(tmp_path / "q.csv", ROWS), official=False)


def test_git_blob_checksum(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    assert (
        dpg.git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    )  # git's empty blob
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert dpg.git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_table_is_checked(tmp_path, table):
    assert [(q.item, q.qid, q.parents, q.category) for q in table[:2]] == [
        ("a", 1, (0,), "entity - whole"),
        ("a", 2, (1,), "attribute - color"),
    ]
    with pytest.raises(UserError, match=r"not the official dpg_bench\.csv"):
        dpg.read_questions(tmp_path / "q.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,text\nx,y\n")
    with pytest.raises(UserError, match=r"missing column.*keywords"):
        dpg.read_questions(bad, official=False)
    write_table(tmp_path / "dep.csv", [("a", 1, "zero", "entity - whole (x)", "q")])
    with pytest.raises(UserError, match=r"dep\.csv:2"):
        dpg.read_questions(tmp_path / "dep.csv", official=False)


def test_corrected_refuses_missing_parents_repeats_and_cycles(tmp_path):
    def items(rows):
        return dpg.item_questions(
            dpg.read_questions(write_table(tmp_path / "t.csv", rows), official=False), "corrected"
        )

    with pytest.raises(UserError, match="item a: proposition 2 depends on 5"):
        items([("a", 1, "0", "entity - whole (x)", "q"), ("a", 2, "5", "entity - whole (y)", "q")])
    with pytest.raises(UserError, match="proposition 1 appears twice"):
        items([("a", 1, "0", "entity - whole (x)", "q"), ("a", 1, "0", "entity - whole (y)", "q")])
    with pytest.raises(UserError, match="cycle"):
        items([("a", 1, "2", "entity - whole (x)", "q"), ("a", 2, "1", "entity - whole (y)", "q")])


def test_compatible_drops_the_first_row_and_keeps_the_last_run(tmp_path, table):
    items = dpg.item_questions(table, "compatible")
    assert list(items["a"]) == [2, 3] and list(items["b"]) == [3, 1, 2]
    assert list(dpg.item_questions(table, "corrected")["a"]) == [1, 2, 3]
    split = dpg.read_questions(
        write_table(tmp_path / "s.csv", [ROWS[0], ROWS[1], ROWS[4], ROWS[2]]), official=False
    )  # a, a, b, a: item a's rows are not consecutive
    assert list(dpg.item_questions(split, "compatible")["a"]) == [3]
    assert list(dpg.item_questions(split, "corrected")["a"]) == [1, 2, 3]


def answers(yes: set[int], qids=(1, 2, 3)) -> dict[int, str]:
    return {q: "yes" if q in yes else "no" for q in qids}


def test_zeroing_propagates_down_a_chain(table):
    a = dpg.item_questions(table, "corrected")["a"]
    # q1 no, q2 and q3 yes: q2 zeroed by q1, q3 by the zeroed q2 (table order): tile = 0
    for mode in dpg.MODES:
        s = dpg.score_item("a", a, [answers({2, 3})], mode)
        assert s.tiles == (0.0,)
    s = dpg.score_item("a", a, [answers({1, 3})], "corrected")  # q2 no zeroes q3: 1/3
    assert s.tiles == pytest.approx((1 / 3,))
    s = dpg.score_item("a", a, [answers({1, 2, 3}), answers({1}), answers({2}), answers(set())], "corrected")
    assert s.tiles == pytest.approx((1, 1 / 3, 0, 0)) and s.score == pytest.approx((1 + 1 / 3) / 4)
    assert dpg.score_item("a", a, [{1: "Yes", 2: "yes.", 3: "yes"}], "corrected").tiles == (
        0.0,
    )  # exactly "yes"


def test_child_before_parent_differs_between_modes(table):
    b = dpg.item_questions(table, "corrected")["b"]  # order 3, 1, 2
    tile = [answers({2, 3})]  # q1 no: q2 zeroed; q3 (depends on q2) was checked before q2 was zeroed
    assert dpg.score_item("b", b, tile, "compatible").tiles == pytest.approx((1 / 3,))
    assert dpg.score_item("b", b, tile, "corrected").tiles == (0.0,)


def test_category_scores_last_tile_raw_vs_every_tile_zeroed(table):
    a = dpg.item_questions(table, "corrected")["a"]
    tiles = [answers({1, 2, 3}), answers({2, 3})]  # tile 2: q1 no, so its zeroed scores are all 0
    compatible = dict(dpg.score_item("a", a, tiles, "compatible").categories)
    corrected = dict(dpg.score_item("a", a, tiles, "corrected").categories)
    assert compatible == {"entity - whole": 0.0, "attribute - color": 1.0, "relation - spatial": 1.0}
    assert corrected == {"entity - whole": 0.5, "attribute - color": 0.5, "relation - spatial": 0.5}


def test_summary_skips_failed_images_and_averages_categories():
    scores = [
        dpg.ItemScore(
            "x", (1.0, 0.5), 0.75, (("entity - whole", 1.0), ("entity - part", 0.0), ("global", 1.0))
        ),
        dpg.ItemScore("y", (0.25,), 0.25, (("entity - whole", 0.0), ("relation - non-spatial", 1.0))),
        dpg.ItemScore("z", (), 0.0, (), failure="KeyError(1)"),
    ]
    s = dpg.summarize(scores, "compatible")
    assert s.images == 2 and s.failed == ("z",)
    assert s.overall == pytest.approx(100 * (0.75 + 0.25) / 2)
    assert s.level1 == pytest.approx({"entity": 100 / 3, "global": 100.0, "relation": 100.0})
    assert s.level2["entity - whole"] == pytest.approx(50.0)
    rows = {r["metric"]: r for r in dpg.result_rows(s, "vqa")}
    assert set(rows) == {
        "dpg/overall",
        "dpg/entity",
        "dpg/global",
        "dpg/relation",
        "dpg/entity/whole",
        "dpg/entity/part",
        "dpg/relation/non-spatial",
    }
    assert rows["dpg/entity"]["count"] == 3 and rows["dpg/overall"]["count"] == 2
    assert {r["mode"] for r in rows.values()} == {"compatible"}
    lines = dpg.summary_lines(s, "model", "imgs", None)
    assert lines[:2] == ["Model: model", "L1 category scores:"]
    assert lines[-2:] == ["Image path: imgs", "DPG-Bench score: 50.0"]
    assert "\tentity - whole: 50.0" in lines


class TileColourVQA:
    """Says "yes" when the question names the tile's colour: checks which crop each question gets."""

    name = "tile-colour"

    def answer(self, images, questions):
        names = {(255, 0, 0): "red", (0, 255, 0): "green", (0, 0, 255): "blue", (255, 255, 255): "white"}
        return [
            "yes" if names[tuple(int(v) for v in im[0, 0])] in q else "no"
            for im, q in zip(images, questions, strict=True)
        ]


def test_grids_are_read_in_tile_order_and_compatible_skips_failures(tmp_path):
    from PIL import Image

    grid = np.zeros((8, 8, 3), np.uint8)
    grid[:4, :4], grid[:4, 4:], grid[4:, :4], grid[4:, 4:] = (
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
        (255, 255, 255),
    )
    for item in ("p", "q"):
        Image.fromarray(grid).save(tmp_path / f"{item}.png")
    rows = [
        ("p", 1, "0", "entity - whole (x)", "red?"),
        ("p", 1, "0", "entity - whole (x)", "red?"),  # dropped in compatible mode (the first data row)
        ("p", 2, "1", "attribute - color (x)", "green?"),
        ("q", 1, "0", "entity - whole (x)", "blue?"),
    ]
    table = dpg.read_questions(write_table(tmp_path / "t.csv", rows), official=False)
    grids = dpg.folder_grids(tmp_path, ["p", "q"])
    items = dpg.item_questions(table, "compatible")
    scores = {s.item: s for s in dpg.evaluate_grids(grids, items, TileColourVQA(), "compatible")}
    # p: q1 yes only on the red (top-left) tile, q2 (green) yes on the top-right tile but zeroed there
    assert scores["p"].tiles == pytest.approx((1 / 2, 0, 0, 0))
    assert scores["q"].tiles == (0.0, 0.0, 1.0, 0.0)  # blue is the bottom-left tile
    assert scores["p"].categories == (("entity - whole", 0.0), ("attribute - color", 0.0))  # the last tile
    assert dpg.evaluate_grids(grids, items, TileColourVQA(), "compatible", tiles=1)[1].tiles == (0.0,)
    broken = {"p": {2: items["p"][2]}, "q": items["q"]}  # a parent the item lacks: skipped, as upstream
    scores = dpg.evaluate_grids(grids, broken, TileColourVQA(), "compatible")
    assert scores[0].failure is not None and scores[1].failure is None
    with pytest.raises(KeyError):
        dpg.evaluate_grids(grids, broken, TileColourVQA(), "corrected")
    with pytest.raises(UserError, match="1 of 3 grids are missing: r"):
        dpg.folder_grids(tmp_path, ["p", "q", "r"])


def test_packaged_prompts_are_the_1065_items():
    items = dpg.prompt_items()
    assert len(items) == dpg.ITEMS and "partiprompts97" in items
