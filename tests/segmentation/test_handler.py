import numpy as np
import pytest
import skimage.data
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult

from veilset.segmentation.base import MaskAnnotation
from veilset.segmentation.handler import MaskGeneratorModelHandler


def test_loads_and_runs_one_image_per_batch():
    handler = MaskGeneratorModelHandler("felzenszwalb:work_max_side=128,max_masks=5")
    assert handler.batch_elements_kwargs() == {"max_batch_size": 1}
    assert not handler.share_model_across_processes()
    model = handler.load_model()
    image = skimage.data.astronaut()[:128, :160]
    (result,) = handler.run_inference([image], model)
    assert isinstance(result, PredictionResult) and result.example is image
    assert 1 <= len(result.inference) <= 5 and all(isinstance(m, MaskAnnotation) for m in result.inference)
    KeyedModelHandler(handler)  # the graph wraps it like this


def test_validation():
    with pytest.raises(ValueError, match="'gpu'"):
        MaskGeneratorModelHandler("felzenszwalb", device="gpu")
    with pytest.raises(ValueError, match="none"):
        MaskGeneratorModelHandler("none")
    assert MaskGeneratorModelHandler("sam:vit_b:/x.pth", device="cuda").share_model_across_processes()
    assert "device=cuda" in MaskGeneratorModelHandler("sam:vit_b:/x.pth", device="cuda").spec


def test_beam_pipeline_runs_inference():
    import apache_beam as beam
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.testing.util import assert_that

    image = skimage.data.astronaut()[:96, :96]
    handler = KeyedModelHandler(MaskGeneratorModelHandler("felzenszwalb:work_max_side=96,max_masks=3"))

    def check(results):
        (key, result), = results
        assert key == "img" and 1 <= len(result.inference) <= 3

    with beam.Pipeline() as p:
        out = p | beam.Create([("img", image)]) | RunInference(handler)
        assert_that(out, check)
