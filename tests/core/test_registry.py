import pytest

from harness.core.registry import Registry, RegistryError
from harness.core.types import UnlearningMethod


def make_registry() -> Registry:
    return Registry("method", "unlearnbench.tests.nonexistent-group")


def test_register_and_get():
    reg = make_registry()

    @reg.decorator("alpha")
    class Alpha(UnlearningMethod):
        def __init__(self, lr: float = 1e-4):
            self.lr = lr

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"]
    assert "alpha" in reg
    assert Alpha.defaults() == {"lr": 1e-4}
    assert Alpha(lr=3.0).get_params() == {"lr": 3.0}


def test_unknown_name_lists_available_and_closest():
    reg = make_registry()
    for name in ("grad_ascent", "grad_diff", "npo"):
        reg.register(name, type(name, (), {}))
    with pytest.raises(RegistryError) as err:
        reg.get("grad_ascnt")
    msg = str(err.value)
    assert "Did you mean 'grad_ascent'?" in msg
    assert "grad_diff" in msg and "npo" in msg


def test_duplicate_registration_names_both():
    reg = make_registry()

    class First:
        pass

    class Second:
        pass

    reg.register("dup", First)
    reg.register("dup", First)  # the same object again is harmless (module re-import)
    with pytest.raises(RegistryError) as err:
        reg.register("dup", Second)
    assert "First" in str(err.value) and "Second" in str(err.value)


def test_method_without_default_is_rejected():
    class Bad(UnlearningMethod):
        def __init__(self, lr):
            self.lr = lr

    with pytest.raises(TypeError, match="lr"):
        Bad.defaults()
