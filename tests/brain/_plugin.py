"""What the App-plugin tests share: where the plugin is and how to run one operator."""
from pathlib import Path

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
URI = "@curate/curate/"


def run_operator(foo, name, ds, **params):
    """Execute the plugin's operator ``name`` on ``ds``; fail the test on its error."""
    res = foo.execute_operator(URI + name, ctx=dict(dataset=ds, params=params))
    assert res.error is None, res.error
    return res
