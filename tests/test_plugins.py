"""veilset.plugins: options (Arg/Args), availability, the registry; and that detectors, mask generators and audit
checks all go through it."""
from __future__ import annotations

import json

import pytest

from veilset import plugins
from veilset.plugins import Arg, Args, Plugin, Registry


def test_arg_parses_strings_and_values_and_names_the_bad_value():
    threshold = Arg("threshold", "float", 0.5, "score", lo=0.0, hi=1.0)
    assert threshold.parse("0.25") == 0.25 and threshold.parse(0.25) == 0.25 and threshold.parse(None) is None
    with pytest.raises(ValueError, match=r"threshold must be in \[0.0, 1.0\], got '1.5'"):
        threshold.parse("1.5")
    with pytest.raises(ValueError, match="threshold must be a number, got 'abc'"):
        threshold.parse("abc")
    with pytest.raises(ValueError, match="'nan'"):
        Arg("x", "float").parse("nan")
    assert Arg("n", "int", lo=1).parse("3") == 3
    with pytest.raises(ValueError, match="n must be an integer >= 1, got '0'"):
        Arg("n", "int", lo=1).parse("0")
    with pytest.raises(ValueError, match=r"c must be in \(0, 1\], got '0'"):
        Arg("c", "float", gt=0, hi=1).parse("0")
    assert Arg("b", "bool").parse("yes") is True and Arg("b", "bool").parse(False) is False
    with pytest.raises(ValueError, match="p must be one of a, b; got 'c'"):
        Arg("p", "choice", choices=("a", "b")).parse("c")
    assert Arg("s", "floats", gt=0).parse("100,300") == (100.0, 300.0) == Arg("s", "floats").parse((100, 300))
    with pytest.raises(ValueError, match="'-1'"):
        Arg("s", "floats", gt=0).parse("100,-1")
    with pytest.raises(ValueError, match="m: no such file '/nonexistent.onnx'"):
        Arg("m", "path").parse("/nonexistent.onnx")
    assert Arg("d", "text", convert=str.upper).parse("cpu") == "CPU"


def test_arg_describes_itself_and_refuses_bad_declarations():
    assert Arg("t", "float", lo=0.0, hi=1.0).describe() == "float in [0.0, 1.0]"
    assert Arg("p", "choice", choices=("a", "b")).describe() == "one of a|b"
    assert Arg("m", "path").describe() == "path"
    with pytest.raises(ValueError, match="kind"):
        Arg("x", "complex")
    with pytest.raises(ValueError, match="needs choices"):
        Arg("x", "choice")
    with pytest.raises(ValueError, match="name"):
        Arg("Bad-Name", "int")


def test_args_fill_defaults_and_reject_unknown_names():
    args = Args(Arg("a", "int", 1, lo=0), Arg("b", "float", None))
    assert args.names == ("a", "b") and len(args) == 2 and args["a"].default == 1
    assert args.parse({}, "x") == {"a": 1, "b": None}
    assert args.parse({"b": "2"}, "x") == {"a": 1, "b": 2.0}
    assert args.parse_given({"b": "2"}, "x") == {"b": 2.0}
    with pytest.raises(ValueError, match="x: unknown option\\(s\\) bogus, zz; accepted: a, b"):
        args.parse({"zz": 1, "bogus": 2}, "x")
    with pytest.raises(ValueError, match="twice"):
        Args(Arg("a", "int"), Arg("a", "float"))


def test_availability_looks_modules_up_without_importing_them():
    assert plugins.needs_modules("json").ok
    missing = plugins.needs_modules("json", "no_such_module_veilset", hint="pip install it")
    assert not missing.ok and "no_such_module_veilset not installed (install: pip install it)" == missing.reason
    assert str(missing).startswith("NOT available: ") and str(plugins.available("needs X")) == "available (needs X)"
    broken = Plugin("thing", "broken", builder=dict, check=lambda: 1 / 0)
    assert not broken.availability().ok and "ZeroDivisionError" in broken.availability().reason


def _registry() -> Registry:
    return Registry("thing", "veilset.test_things_no_such_group", {"dicty": "tests.test_plugins:DICTY"})


DICTY = Plugin("thing", "dicty", builder=dict, args=Args(Arg("size", "int", 1, lo=1)), summary="a dict")


def test_registry_builds_with_converted_options_and_names_bad_values():
    reg = _registry()
    assert reg.names() == ["dicty"] and reg.problems() == {}
    assert reg.build("dicty", {"size": "3"}) == {"size": 3}
    with pytest.raises(ValueError, match="unknown thing 'nope'; available: dicty"):
        reg.build("nope")
    with pytest.raises(ValueError, match="dicty: unknown option\\(s\\) colour; accepted: size"):
        reg.build("dicty", {"colour": "red"})
    with pytest.raises(ValueError, match="size must be an integer >= 1, got '0'"):
        reg.build("dicty", {"size": "0"})
    with pytest.raises(ValueError, match="dicty takes only key=value options, got 'x'"):
        reg.build("dicty", {}, "x")


def test_registry_add_remove_and_positional():
    reg = _registry()
    pos = reg.add(Plugin("thing", "pos", builder=lambda positional, **kw: (positional, kw), positional="A:B",
                         args=Args(Arg("k", "bool", False))))
    assert reg.names() == ["dicty", "pos"] and pos.usage() == "pos:A:B[:key=value,...]"
    assert reg.build("pos", {"k": "yes"}, "a:b") == ("a:b", {"k": True})
    with pytest.raises(ValueError, match="already registered"):
        reg.add(Plugin("thing", "dicty", builder=dict))
    with pytest.raises(ValueError, match="cannot be registered"):
        reg.add(Plugin("other", "x", builder=dict))
    reg.remove("pos")
    assert reg.names() == ["dicty"]
    with pytest.raises(ValueError, match="not one added"):
        reg.remove("dicty")


def test_a_reference_that_is_not_a_plugin_is_reported_not_raised_when_listing():
    reg = Registry("thing", "veilset.test_things_no_such_group",
                   {"dicty": "tests.test_plugins:DICTY", "bad": "tests.test_plugins:_registry",
                    "gone": "tests.no_such_module:X"})
    assert [p.name for p in reg.plugins()] == ["dicty"]
    problems = reg.problems()
    assert "is not a veilset.plugins.Plugin" in problems["bad"] and "ModuleNotFoundError" in problems["gone"]
    with pytest.raises(ValueError, match="'gone'.*cannot be loaded"):
        reg.get("gone")


def test_every_room_uses_the_one_registry():
    from veilset.audit.checks import CHECKS
    from veilset.detectors.registry import DETECTORS
    from veilset.segmentation.registry import MASKS

    assert DETECTORS.names() == ["centerface", "plates", "clpdet", "pptext", "retinaface", "egoblur_face",
                                 "egoblur_plate", "none"]
    assert MASKS.names()[:4] == ["felzenszwalb", "sam", "sam2", "none"]
    assert CHECKS.names()[:6] == ["integrity", "takedowns", "metadata", "anonymization", "residual_faces", "masks"]
    for registry in (DETECTORS, MASKS, CHECKS):
        assert all(isinstance(p, Plugin) and p.kind == registry.kind for p in registry.plugins())
        assert registry.problems() == {}
    assert {p.name for p in DETECTORS.plugins() if "face" in p.tags} == {"centerface", "retinaface", "egoblur_face"}


def test_detector_options_have_one_source_of_truth():
    """The constructor and the registry read the same Args: defaults, ranges and names."""
    from veilset.detectors import centerface
    from veilset.detectors.registry import DETECTORS, build_detector

    spec = DETECTORS.get("centerface").args
    assert spec is centerface.ARGS and spec["threshold"].default == centerface.DEFAULT_THRESHOLD
    det = build_detector("centerface")
    assert (det.threshold, det.nms_iou, det.preset) == (spec["threshold"].default, spec["nms"].default, "default")
    with pytest.raises(ValueError, match="'7'"):
        centerface.CenterFaceDetector(threshold="7")


def test_built_in_references_stay_inside_their_room():
    """A registry imports its built-ins by name: those names must be modules of the registry's own room."""
    from veilset.audit.checks import CHECKS
    from veilset.detectors.registry import DETECTORS
    from veilset.segmentation.registry import MASKS

    for registry, room in ((DETECTORS, "veilset.detectors."), (MASKS, "veilset.segmentation."),
                           (CHECKS, "veilset.audit.")):
        refs = registry.builtins
        assert refs and all(ref.startswith(room) and ":" in ref for ref in refs.values()), refs


def test_veilset_detectors_lists_options_defaults_and_availability(capsys):
    from veilset.cli import main

    assert main(["detectors"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("detectors (veilset build --face-detector / --plate-detector NAME[:key=value,...]):")
    assert "  centerface[:key=value,...] [face]: available\n" in text
    assert "      threshold=0.1 " in text and "float in [0.0, 1.0]" in text
    assert "  sam:MODEL_TYPE:CHECKPOINT[:key=value,...]: " in text and "\nmask generators (" in text
    assert "  residual_faces: available" in text and "      --sample -" in text
    for name in ("plates", "clpdet", "pptext", "retinaface", "egoblur_face", "egoblur_plate", "none", "felzenszwalb",
                 "sam2", "integrity", "takedowns", "metadata", "anonymization", "masks"):
        assert f"\n  {name}" in text, name
    assert main(["detectors", "--json"]) == 0
    cat = json.loads(capsys.readouterr().out)
    [plates] = [d for d in cat["detectors"] if d["name"] == "plates"]
    assert plates["available"] and plates["tags"] == ["license_plate"] and cat["problems"] == {}
    assert {"name": "max_text", "type": "int in [0, 100]", "default": 1,
            "help": "text boxes kept per image (per 1000-px cell of an image larger than a photo) "
                    "that overlap no clp_det box"} in plates["args"]


def test_build_help_names_the_detectors_and_mask_generators(capsys):
    from veilset.cli import main

    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "face detector: centerface, retinaface, egoblur_face, none (default: centerface" in text
    assert "licence-plate detector: plates, clpdet, pptext, egoblur_plate, none (default: plates" in text
    assert "automatic mask generator: felzenszwalb, sam, sam2, none (default: felzenszwalb" in text


def test_cli_errors_name_the_bad_value(tmp_path, capsys):
    from veilset.cli import main

    (tmp_path / "in.png").write_bytes(b"")
    for flag, spec, bad in (("--face-detector", "nosuch", "unknown detector 'nosuch'"),
                            ("--face-detector", "centerface:threshold=7", "threshold must be in [0.0, 1.0], got '7'"),
                            ("--masks", "felzenszwalb:sigma=-1", "sigma must be >= 0, got '-1'"),
                            ("--plate-detector", "plates:colour=red", "plates: unknown option(s) colour")):
        assert main(["build", str(tmp_path / "in.png"), "--output", str(tmp_path / "out"), flag, spec]) == 2
        err = capsys.readouterr().err
        assert bad in err and "Traceback" not in err, err
