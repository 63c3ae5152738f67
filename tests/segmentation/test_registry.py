import pytest

from veilset.segmentation.felzenszwalb import FelzenszwalbMaskGenerator
from veilset.segmentation.registry import available, build_mask_generator
from veilset.segmentation.spec import MaskSpec


def test_none_and_felzenszwalb():
    assert build_mask_generator("none") is None
    gen = build_mask_generator("felzenszwalb:scales=100,300,max_masks=50")
    assert isinstance(gen, FelzenszwalbMaskGenerator)
    assert gen.options.scales == (100.0, 300.0) and gen.options.max_masks == 50
    assert "felzenszwalb" in available() and "none" in available()


def test_unknown_lists_available():
    with pytest.raises(ValueError, match="unknown mask generator 'nope'.*felzenszwalb"):
        build_mask_generator("nope")
    with pytest.raises(ValueError, match="takes only key=value"):
        build_mask_generator("felzenszwalb:oops")
    with pytest.raises(ValueError, match="no arguments"):
        build_mask_generator("none:x=1")


@pytest.mark.parametrize("text,name,positional,options", [
    ("felzenszwalb", "felzenszwalb", "", {}),
    ("felzenszwalb:scales=100,300,sigma=0.5", "felzenszwalb", "", {"scales": "100,300", "sigma": "0.5"}),
    ("sam:vit_b:/ckpt/sam.pth", "sam", "vit_b:/ckpt/sam.pth", {}),
    ("sam:vit_b:gs://bucket/sam.pth:preset=sa1b,points_per_side=16", "sam", "vit_b:gs://bucket/sam.pth",
     {"preset": "sa1b", "points_per_side": "16"}),
    ("sam2:configs/sam2.1_hiera_t.yaml:/c/sam2.pt", "sam2", "configs/sam2.1_hiera_t.yaml:/c/sam2.pt", {}),
])
def test_spec_grammar(text, name, positional, options):
    spec = MaskSpec.parse(text)
    assert (spec.name, spec.positional, spec.option_dict()) == (name, positional, options)
    assert MaskSpec.parse(str(spec)) == spec


def test_spec_errors():
    with pytest.raises(ValueError, match="empty"):
        MaskSpec.parse("")
    with pytest.raises(ValueError, match="twice"):
        MaskSpec.parse("felzenszwalb:sigma=1,sigma=2")
