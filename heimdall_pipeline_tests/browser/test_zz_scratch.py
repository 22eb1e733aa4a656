import json, time
def test_scratch(dagster_ui, ui_env):
    open("/tmp/ui_scratch.json","w").write(json.dumps({"url": dagster_ui, "env": ui_env}))
    time.sleep(1500)
