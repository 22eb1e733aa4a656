"""heimdall_pipeline/tags.py spells Dagster's tags as Dagster does (a renamed tag would silently
stop range runs and partition lookups)."""

from dagster._core.storage import tags as dagster_tags

from heimdall_pipeline import tags

DAGSTER_NAMES = ("PARTITION_NAME_TAG", "ASSET_PARTITION_RANGE_START_TAG", "ASSET_PARTITION_RANGE_END_TAG",
                 "RUN_KEY_TAG", "SENSOR_NAME_TAG")


def test_dagster_tags_match_dagster():
    assert {name: getattr(tags, name) for name in DAGSTER_NAMES} == {
        name: getattr(dagster_tags, name) for name in DAGSTER_NAMES}


def test_every_dagster_tag_is_checked_and_ours_are_in_our_namespace():
    names = [name for name in vars(tags) if name.endswith(("_TAG", "_TAG_PREFIX"))]
    assert {n for n in names if getattr(tags, n).startswith("dagster/")} == set(DAGSTER_NAMES)
    assert all(getattr(tags, n).startswith(("dagster/", "heimdall/")) for n in names)
