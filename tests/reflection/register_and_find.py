#!/usr/bin/env python3
"""A client that knows nothing of carelog but its address and a token.

It discovers the API through gRPC server reflection (v1), builds the request
messages from the served descriptors, registers a patient and finds it
again by NHS number. Exit status 0 only if both worked.

    register_and_find.py HOST:PORT TOKEN
"""

import sys
import time
import uuid

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SERVICE = "carelog.demographics.v1.DemographicsService"


def main(address: str, token: str) -> int:
    channel = grpc.insecure_channel(address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = database.get_services()
    if SERVICE not in services:
        print(f"{SERVICE} not offered; server lists {services}", file=sys.stderr)
        return 1
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(SERVICE)
    metadata = [("authorization", f"Bearer {token}")]

    def call(method_name: str, body: dict):
        method = service.methods_by_name[method_name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        rpc = channel.unary_unary(
            f"/{SERVICE}/{method_name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        request = json_format.ParseDict(body, request_class())
        return json_format.MessageToDict(rpc(request, metadata=metadata, timeout=10))

    nhs = "9990001" + str(uuid.uuid4().int % 1000).zfill(3)
    # Make the tenth digit the modulus 11 check digit (999 range: test numbers).
    digits = [int(c) for c in nhs[:9]]
    check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1))) % 11
    check = 0 if check == 11 else check
    if check == 10:
        nhs = "9990000018"
    else:
        nhs = nhs[:9] + str(check)

    patient = call(
        "RegisterPatient",
        {
            "requestId": str(uuid.uuid4()),
            "details": {
                "nhsNumber": nhs,
                "nhsNumberVerificationStatus": "NHS_NUMBER_VERIFICATION_STATUS_VERIFIED",
                "name": {"family": "Reflection", "given": ["Rita"], "prefix": "Ms"},
                "birthDate": {"year": 1971, "month": 5, "day": 2},
                "gender": "ADMINISTRATIVE_GENDER_FEMALE",
                "addresses": [{"lines": ["2 Infirmary Street"], "postcode": "LS1 2JP"}],
                "registeredPracticeOds": "A81001",
            },
        },
    )
    patient_id = patient["patientId"]
    sequence = patient["streamSequence"]
    print(f"registered patient {patient_id} at stream sequence {sequence}")
    found = call("SearchPatients", {"nhsNumber": nhs, "minSequence": sequence})
    ids = [p["patientId"] for p in found.get("patients", [])]
    if ids != [patient_id]:
        print(f"search by NHS number returned {ids}, expected [{patient_id}]", file=sys.stderr)
        return 1
    print(f"found patient {patient_id} by NHS number")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
