"""reprokit.audit: RecordingSplits records every way of reading a split."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from reprokit.audit import SPLIT_NAMES, RecordingSplits


def _pair(n: int, offset: float) -> tuple[torch.Tensor, torch.Tensor]:
    X = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3) + offset
    y = torch.arange(n, dtype=torch.int64) % 10
    return X, y


@pytest.fixture
def splits() -> RecordingSplits:
    return RecordingSplits(train=_pair(6, 0.0), val=_pair(4, 100.0), test=_pair(5, 200.0))


def test_fresh_splits_record_nothing(splits):
    assert splits.accessed == frozenset()
    splits.assert_not_accessed("test")  # must not raise


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda s: s.test, id="attribute"),
        pytest.param(lambda s: getattr(s, "test"), id="getattr"),  # noqa: B009
        pytest.param(lambda s: s["test"], id="getitem"),
        pytest.param(lambda s: vars(s)["test"], id="vars"),
        pytest.param(lambda s: s.__dict__["test"], id="__dict__"),
        pytest.param(lambda s: list(s)[2], id="iteration"),
        pytest.param(lambda s: hasattr(s, "test"), id="hasattr"),
    ],
)
def test_every_path_to_the_test_split_is_recorded(splits, read):
    read(splits)
    assert "test" in splits.accessed
    with pytest.raises(AssertionError, match="test split"):
        splits.assert_not_accessed("test")


def test_reads_return_the_stored_values(splits):
    X, y = splits.val
    X_ref, y_ref = _pair(4, 100.0)
    assert torch.equal(X, X_ref) and torch.equal(y, y_ref)
    assert torch.equal(splits["train"][0], _pair(6, 0.0)[0])


def test_reading_train_and_val_leaves_test_unread(splits):
    _ = splits.train
    _ = splits["val"]
    assert splits.accessed == frozenset({"train", "val"})
    splits.assert_not_accessed("test")


def test_accesses_keep_order_and_how(splits):
    _ = splits.val
    _ = splits["test"]
    assert splits.accesses == (("val", ".val"), ("test", "splits['test']"))


def test_mutating_a_returned_tensor_does_not_change_the_stored_data(splits):
    X, y = splits.train
    X.fill_(-1.0)
    y.zero_()
    X2, y2 = splits.train
    assert torch.equal(X2, _pair(6, 0.0)[0])
    assert torch.equal(y2, _pair(6, 0.0)[1])


def test_mutating_the_constructor_inputs_does_not_change_the_stored_data():
    X, y = _pair(3, 0.0)
    s = RecordingSplits(train=(X, y), val=_pair(2, 1.0), test=_pair(2, 2.0))
    X.fill_(7.0)
    assert not torch.equal(s.train[0], X)


def test_private_storage_is_not_reachable_by_plain_attribute_reads(splits):
    with pytest.raises(AttributeError):
        splits._RecordingSplits__fetch  # noqa: B018
    with pytest.raises(AttributeError):
        splits.data  # noqa: B018
    assert set(dir(splits)) <= {*SPLIT_NAMES, "accessed", "accesses", "assert_not_accessed"}
    assert splits.accessed == frozenset()


def test_the_record_cannot_be_overwritten_or_copied_away(splits):
    with pytest.raises(AttributeError):
        splits.accessed = frozenset()
    with pytest.raises(AttributeError):
        splits.test = None
    _ = copy.deepcopy(splits).test
    _ = copy.copy(splits)["test"]
    assert splits.accesses == (("test", ".test"), ("test", "splits['test']"))
    with pytest.raises(TypeError):
        pickle.dumps(splits)


def test_message_says_how_the_test_split_was_read_and_what_to_do(splits):
    _ = splits.test
    _ = splits["test"]
    with pytest.raises(AssertionError) as info:
        splits.assert_not_accessed("test")
    msg = str(info.value)
    assert "your search read the test split (via .test, splits['test'])" in msg
    assert "validation split only" in msg


def test_unknown_split_names_are_refused(splits):
    with pytest.raises(KeyError, match="'train', 'val', 'test'"):
        splits["holdout"]
    with pytest.raises(ValueError):
        splits.assert_not_accessed("tset")


def test_mismatched_pair_is_refused():
    with pytest.raises(ValueError, match="must match"):
        RecordingSplits(train=(torch.zeros(3, 2), torch.zeros(2)), val=_pair(2, 0), test=_pair(2, 0))
    with pytest.raises(TypeError, match="pair"):
        RecordingSplits(train=torch.zeros(3, 2), val=_pair(2, 0), test=_pair(2, 0))


def test_class_asks_the_sandbox_for_call_back_proxies():
    assert RecordingSplits.__reprokit_callback__ is True
