"""Ray job entrypoint for labelling: the arguments of `fer label`.

ray job submit --working-dir . -- python jobs/label.py /mnt/archive --out /mnt/labels --gpus 2
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("label")
