"""predict.py's pipeline: frames in and out (`streams`), one recording through the model (`run`)
into its files (`recording`), Pupil Core and Neon recordings (`pupil_core`, `neon`) and folders of
them (`batch`), the Lab Streaming Layer outlet (`lsl`) and the camera-rate figures (`speed`)."""
