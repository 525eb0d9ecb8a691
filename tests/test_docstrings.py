"""Every public module, class, function, method and property of bigs has a docstring, and
the user-facing model classes give their output shapes and losses (issue 16, item 7)."""

import importlib
import inspect
import pkgutil

import pytest

import bigs

OPTIONAL = ("torch", "transformers", "matplotlib", "onnx", "onnxruntime", "onnxscript", "sentence_transformers")


def _public_modules():
    for info in pkgutil.walk_packages(bigs.__path__, "bigs."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            yield info.name


def _missing(module) -> list[str]:
    """Names of the public things `module` defines that have no docstring of their own (a
    method overriding a documented one may rely on the base's)."""
    missing = [] if module.__doc__ else [module.__name__]
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not obj.__doc__:
            missing.append(f"{module.__name__}.{name}")
        if not inspect.isclass(obj):
            continue
        for attr, member in vars(obj).items():
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if attr.startswith("_") or not inspect.isfunction(function) or function.__doc__:
                continue
            if not any(getattr(getattr(base, attr, None), "__doc__", None) for base in obj.__mro__[1:]):
                missing.append(f"{module.__name__}.{name}.{attr}")
    return missing


@pytest.mark.parametrize("name", sorted(_public_modules()))
def test_every_public_name_has_a_docstring(name):
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{name} needs the optional package {error.name}")
        raise
    assert _missing(module) == []


def test_model_classes_document_their_outputs_and_losses():
    from bigs.modeling import MODEL_CLASSES

    for name, cls in MODEL_CLASSES.items():
        doc = cls.__doc__
        assert "[B, " in doc, name                               # output shapes
        assert ("loss" in doc) == (name != "FlaxBiGSModel"), name   # each head says what its labels give
