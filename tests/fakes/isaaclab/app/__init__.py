"""isaaclab.app.AppLauncher: starts Isaac Sim (Kit) once per process; `.app` is the running application."""

_LAUNCHED = []


class _App:
    def __init__(self, headless, device):
        self.headless, self.device, self.running = headless, device, True

    def close(self):
        self.running = False


class AppLauncher:
    def __init__(self, launcher_args=None, **kwargs):
        args = dict(
            vars(launcher_args)
            if launcher_args is not None and not isinstance(launcher_args, dict)
            else (launcher_args or {})
        )
        args.update(kwargs)
        if _LAUNCHED:
            raise RuntimeError("the simulation app is already running in this process")
        self.app = _App(bool(args.get("headless", False)), args.get("device", "cuda:0"))
        _LAUNCHED.append(self.app)


def kit_running():
    return bool(_LAUNCHED)
