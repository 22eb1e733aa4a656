import sys

from heimdall_pipeline.bench import main

sys.exit(main())
