"""Ray job entrypoint for training: the arguments of `fer train`.

    ray job submit --working-dir . -- python jobs/train.py --data /mnt/fer2013 --out /mnt/runs/r1 --workers 4 \
        --gpus-per-worker 1
"""

from _entry import run_command

if __name__ == "__main__":
    run_command("train")
