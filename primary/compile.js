// Compiles contracts/FastPayPrimary.sol with the pinned solcjs and fixed settings, and prints
// the artifact (ABI, creation and runtime bytecode, compiler and settings) as JSON on stdout.
// Run through scripts/contract.sh, which writes or checks primary/artifacts/.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const CONTRACT = 'FastPayPrimary';
const SOURCE = `contracts/${CONTRACT}.sol`;
// Fixed so that the same source always gives the same bytecode: the optimizer tuned for about
// 200 calls per deployment (solc's default), and the EVM version of Ethereum mainnet's Prague
// upgrade, which anvil and every current chain run.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'prague',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

const input = {
  language: 'Solidity',
  sources: { [SOURCE]: { content: fs.readFileSync(path.join(__dirname, SOURCE), 'utf8') } },
  settings: SETTINGS,
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
// Warnings fail the build too: the contract holds money, and a warning is cheaper to fix than
// to explain.
for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
if ((output.errors || []).some((e) => e.severity !== 'info')) process.exit(1);

const compiled = output.contracts[SOURCE][CONTRACT];
const { outputSelection, ...settings } = SETTINGS;
const artifact = {
  contractName: CONTRACT,
  source: SOURCE,
  compiler: { version: solc.version(), settings },
  abi: compiled.abi,
  bytecode: '0x' + compiled.evm.bytecode.object,
  deployedBytecode: '0x' + compiled.evm.deployedBytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + '\n');
