"""R1's constants for its OpenAI Gym (SAC) study (docs/science.md section 2; values from R1's released analysis,
github prestonfu/qscaled, MIT): what the Gym tests, the benchmark and the example configs use."""

SWEEP_MAX_RETURNS = {
    "HalfCheetah-v4": 7300 * 1.25,
    "Walker2d-v4": 4000 * 1.25,
    "Ant-v4": 5300 * 1.25,
    "Humanoid-v4": 5200 * 1.25,
}
FITTED_MAX_RETURNS = {
    "HalfCheetah-v4": 9800.0,
    "Walker2d-v4": 4950.0,
    "Ant-v4": 6625.0,
    "Humanoid-v4": 6450.0,
}
MODEL_SIZE = 1.5e5
DELTA = 4e9
SWEEP_THRESHOLD = 800.0


def configs(data_root, out_root, bootstrap=100, plots=True):
    """The three analyses of R1's Gym study as config dicts: sweep (rules), ours, baseline."""
    sweep = {
        "inputs": [f"{data_root}/gym_sweep"],
        "max_returns": SWEEP_MAX_RETURNS,
        "bootstrap": bootstrap,
        "sweep_threshold": SWEEP_THRESHOLD,
        "model_size": MODEL_SIZE,
        "delta": DELTA,
        "out": f"{out_root}/sweep",
        "plots": plots,
    }
    fitted = lambda name: {
        "inputs": [f"{data_root}/{name}"],
        "max_returns": FITTED_MAX_RETURNS,
        "bootstrap": bootstrap,
        "model_size": MODEL_SIZE,
        "delta": DELTA,
        "holdout_top_k": 2,
        "hparam_fits": f"{out_root}/sweep/fits.json",
        "out": f"{out_root}/{name}",
        "plots": plots,
    }
    return sweep, fitted("gym_ours"), fitted("gym_baseline_utd2")
